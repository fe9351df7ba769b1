FROM debian:bookworm-slim
RUN echo hi > /out
