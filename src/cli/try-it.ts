import path from 'node:path';

/**
 * The copy-paste example `signet start` prints once the server listens (issue #33): it must work
 * as printed from another terminal, in any folder, against the address the server really took
 * (a port from signet.yaml or SIGNET_PORT after a restart, not a default). So the data folder's
 * files are named by absolute paths, and curl fails on an HTTP error (`--fail-with-body`)
 * instead of saving a problem document where the certificate should be for openssl to choke on.
 */
export function tryItExample({ dataDir, url }: { dataDir: string; url: string }): string {
  const data = path.resolve(dataDir);
  const adminKey = shellQuote(path.join(data, 'secrets', 'admin-api-key'));
  const root = shellQuote(path.join(data, 'certs', 'dev-root.pem'));
  const endpoint = shellQuote(`${reachable(url)}/v1/certificates?policy=web-server`);
  return `
Try it (in another terminal):
  export SIGNET_API_KEY="$(cat ${adminKey})"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout www.key \\
    -subj /CN=www.example.com -addext subjectAltName=DNS:www.example.com -out www.csr
  curl --fail-with-body -sS -o www.pem -H "Authorization: Bearer $SIGNET_API_KEY" \\
    -H 'Content-Type: application/pkcs10' -H 'Accept: application/pem-certificate-chain' \\
    --data-binary @www.csr ${endpoint} \\
    && openssl verify -CAfile ${root} -untrusted www.pem www.pem
If curl fails, www.pem holds the server's problem document, which says why.
`;
}

/** A listener on every address is reached on this machine's loopback. */
function reachable(url: string): string {
  return url.replace('//0.0.0.0:', '//127.0.0.1:').replace('//[::]:', '//[::1]:');
}

/** A word for a POSIX shell: as it is when it is plain, else in single quotes. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
