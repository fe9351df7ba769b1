FROM alpine:3.20 as base
RUN echo hi > /out
