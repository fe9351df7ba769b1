FROM alpine:3.20 AS Builder
RUN echo hi > /out

FROM alpine:3.20
COPY --from=Builder /out /out
