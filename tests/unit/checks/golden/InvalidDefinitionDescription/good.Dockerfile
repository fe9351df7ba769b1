# check=experimental=InvalidDefinitionDescription

# go-builder records the Go version
FROM golang:1.22 AS go-builder
RUN go version > /version

FROM alpine:3.20
COPY --from=go-builder /version /version
