FROM alpine:3.20
RUN echo one > /one
run echo two > /two
COPY app.conf /etc/app.conf
