FROM alpine:3.20 AS build-one
RUN echo one > /one

FROM alpine:3.20 AS build-two
RUN echo two > /two

FROM alpine:3.20
COPY --from=build-one /one /one
COPY --from=build-two /two /two
