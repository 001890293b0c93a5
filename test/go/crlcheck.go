// crlcheck parses CRLs with Go's crypto/x509 (standard library only) and checks each signature
// against the issuer certificate: an independent verifier for the CRLs Signet writes.
//
// go run test/go/crlcheck.go ISSUER.pem CRL.der...
// prints, per CRL, one JSON line: number, entries, extensions (oid and critical).
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
)

type extension struct {
	OID      string `json:"oid"`
	Critical bool   `json:"critical"`
}

type result struct {
	File       string      `json:"file"`
	Number     string      `json:"number"`
	Entries    int         `json:"entries"`
	Extensions []extension `json:"extensions"`
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: crlcheck ISSUER.pem CRL.der...")
		os.Exit(2)
	}
	issuerPem, err := os.ReadFile(os.Args[1])
	fail(err)
	block, _ := pem.Decode(issuerPem)
	if block == nil {
		fail(fmt.Errorf("no PEM block in %s", os.Args[1]))
	}
	issuer, err := x509.ParseCertificate(block.Bytes)
	fail(err)
	for _, file := range os.Args[2:] {
		der, err := os.ReadFile(file)
		fail(err)
		crl, err := x509.ParseRevocationList(der)
		fail(err)
		fail(crl.CheckSignatureFrom(issuer))
		out := result{File: file, Number: crl.Number.String(), Entries: len(crl.RevokedCertificates)}
		for _, e := range crl.Extensions {
			out.Extensions = append(out.Extensions, extension{OID: e.Id.String(), Critical: e.Critical})
		}
		line, err := json.Marshal(out)
		fail(err)
		fmt.Println(string(line))
	}
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
