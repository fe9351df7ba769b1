FROM alpine:3.20
CMD ["echo", "one"]
CMD ["echo", "two"]
