ARG VERSION=1.2.3
FROM alpine:3.20
ARG VERSION
RUN echo "building version $VERSION" > /version
