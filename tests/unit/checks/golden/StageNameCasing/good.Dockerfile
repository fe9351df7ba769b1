FROM alpine:3.20 AS builder
RUN echo hi > /out

FROM alpine:3.20
COPY --from=builder /out /out
