// Command imagebuild builds gitk8s's container image without a Docker
// engine: one layer holding the static gitk8s binary, the CA certificates
// of the build machine, and the passwd and group files of a non-root user,
// on no base image at all. It writes the image as an OCI image layout and
// as a tarball that docker load and podman load read.
//
//	CGO_ENABLED=0 go build -ldflags "-X main.version=v1.2.3 -X github.com/gitk8s/gitk8s/internal/apply.Tooling=gitk8s/v1.2.3" -o bin/gitk8s-static ./cmd/gitk8s
//	go run ./cmd/imagebuild --binary bin/gitk8s-static --version v1.2.3 --layout out/oci --tarball out/gitk8s.tar
//
// make image does both.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gitk8s/gitk8s/internal/image"
)

func main() {
	var opts image.Options
	var layout, tarball string
	flag.StringVar(&opts.Binary, "binary", "", "the static gitk8s binary to put in the image")
	flag.StringVar(&opts.Version, "version", "dev", "the version the binary was stamped with")
	flag.StringVar(&opts.CACertificates, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "the PEM bundle of CA certificates to put in the image")
	flag.StringVar(&opts.Repository, "repository", "gitk8s", "the repository the tarball's tag names")
	flag.StringVar(&layout, "layout", "", "write an OCI image layout to this folder")
	flag.StringVar(&tarball, "tarball", "", "write a tarball (docker load) to this file")
	flag.Parse()
	if opts.Binary == "" || (layout == "" && tarball == "") {
		fmt.Fprintln(os.Stderr, "usage: imagebuild --binary FILE [--version V] (--layout DIR | --tarball FILE)")
		os.Exit(2)
	}
	img, err := image.Build(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagebuild:", err)
		os.Exit(1)
	}
	if layout != "" {
		if err := image.WriteLayout(img, layout); err != nil {
			fmt.Fprintln(os.Stderr, "imagebuild:", err)
			os.Exit(1)
		}
	}
	if tarball != "" {
		if err := image.WriteTarball(img, opts.Repository+":"+opts.Version, tarball); err != nil {
			fmt.Fprintln(os.Stderr, "imagebuild:", err)
			os.Exit(1)
		}
	}
	digest, _ := img.Digest()
	fmt.Printf("built %s:%s %s\n", opts.Repository, opts.Version, digest)
}
