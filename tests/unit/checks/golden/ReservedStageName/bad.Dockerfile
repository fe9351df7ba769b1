FROM alpine:3.20 AS context
RUN echo hi > /out
