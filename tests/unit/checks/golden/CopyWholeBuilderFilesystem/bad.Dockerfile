FROM golang:1.22 AS builder
WORKDIR /src
COPY . .
RUN go build -o /out/app .

FROM debian:bookworm-slim
COPY --from=builder / /
COPY --from=builder /root/.cache /root/.cache
ENTRYPOINT ["/out/app"]
