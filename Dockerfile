# gitk8s: a static binary on a minimal non-root image with CA certificates.
# `make image` builds the equivalent image without Docker (cmd/imagebuild).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY policies ./policies
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X github.com/gitk8s/gitk8s/internal/apply.Tooling=gitk8s/${VERSION}" -o /out/gitk8s ./cmd/gitk8s

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gitk8s /usr/local/bin/gitk8s
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/gitk8s"]
