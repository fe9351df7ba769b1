# check=experimental=InvalidDefinitionDescription

# The Go toolchain
FROM golang:1.22 AS go-builder
RUN go version > /version

FROM alpine:3.20
COPY --from=go-builder /version /version
