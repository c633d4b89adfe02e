# courierd's container image: a static binary (CGO_ENABLED=0: the SQLite
# store is pure Go) on a distroless base, running as a non-root user.
#
#   docker build -t courierd .
#   docker run --rm courierd --version
#
# The image runs deploy/courierd.yaml, which the environment completes
# (README, "Deploy"). The binary reports the commit it was built from
# (courierd --version) when the build context holds the repository's .git
# directory, as a clone does.

FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags=-s -o /out/courierd ./cmd/courierd
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/courierd /usr/local/bin/courierd
COPY --from=build /src/deploy/courierd.yaml /etc/courier/courierd.yaml
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/courier
# The working directory is writable: the SQLite store and the embedded
# emulator's data, when a configuration uses them, live here.
WORKDIR /var/lib/courier
USER nonroot:nonroot
# gRPC API; HTTP: HTTP/JSON API, dashboard, /metrics, /healthz, /readyz.
EXPOSE 8005 8006
ENTRYPOINT ["/usr/local/bin/courierd"]
CMD ["--config", "/etc/courier/courierd.yaml"]
