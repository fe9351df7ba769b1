FROM rust:1.80 AS builder
WORKDIR /src
COPY . .
RUN cargo build --release

FROM debian:bookworm-slim
COPY --from=builder /src/target/release/app /usr/local/bin/app
CMD ["app"]
