FROM rust:1.80 AS builder
WORKDIR /src
COPY . .
RUN cargo build

FROM debian:bookworm-slim
COPY --from=builder /src/target/debug/app /usr/local/bin/app
CMD ["app"]
