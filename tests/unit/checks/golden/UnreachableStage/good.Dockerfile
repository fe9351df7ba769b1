FROM alpine:3.20 AS notes
RUN echo "release notes" > /note

FROM alpine:3.20 AS app
COPY --from=notes /note /note
RUN echo app > /app.txt
