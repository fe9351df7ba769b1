FROM alpine:3.20
RUN echo one > /one
RUN echo two > /two
COPY app.conf /etc/app.conf
