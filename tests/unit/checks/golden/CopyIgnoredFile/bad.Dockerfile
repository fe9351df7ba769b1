FROM alpine:3.20
COPY secrets.txt /etc/app/
