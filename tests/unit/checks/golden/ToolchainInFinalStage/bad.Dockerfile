FROM debian:bookworm-slim AS builder
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY hello.c /src/hello.c
RUN mkdir /out && gcc -O2 -o /out/hello /src/hello.c -lssl

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/hello /usr/local/bin/hello
CMD ["hello"]
