FROM alpine:3.20
RUN --mount=type=secret,id=github_token,env=GITHUB_TOKEN test -n "$GITHUB_TOKEN"
