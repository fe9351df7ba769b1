FROM alpine:3.20
COPY config.txt /etc/app/
