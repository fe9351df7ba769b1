FROM golang:1.22 AS builder
WORKDIR /src
COPY . .
RUN go test ./... && go build -o /out/app .

FROM gcr.io/distroless/static-debian12
COPY --from=builder /out/app /app
ENTRYPOINT ["/app"]
