FROM alpine:3.20
RUN echo "an old experiment" > /note

FROM alpine:3.20 AS app
RUN echo app > /app.txt
