import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { Context } from 'hono';
import { AppError } from '../../lib/errors.ts';
import { InvalidSerialError } from '../../lib/serial.ts';
import type { ApiEnv, Principal, PrincipalResolver, Role } from '../env.ts';

/** One entry of config server.tls.clients: which client certificates get which roles. */
export interface ClientCertificateMapping {
  /** The certificate's subject as an RFC 4514 string, e.g. `CN=deploy-bot,O=Example Corp`. */
  subject?: string;
  /** One of its SANs, as `dns:...`, `uri:...`, `email:...`, `ip:...` (or the bare value). */
  san?: string;
  roles: Role[];
  policies: string[];
}

/** `CN=a, O=b` and `cn=a,o=b` compare equal: attribute types are case-insensitive, spaces after commas are not significant. */
const normaliseDn = (dn: string) =>
  dn
    .split(/,\s*/)
    .map((rdn) => {
      const at = rdn.indexOf('=');
      return at < 0 ? rdn : `${rdn.slice(0, at).trim().toUpperCase()}=${rdn.slice(at + 1).trim()}`;
    })
    .join(',');

/** Node's subject text (one attribute per line, most significant first) as RFC 4514 (least significant first). */
const subjectOf = (certificate: X509Certificate) =>
  certificate.subject.split('\n').filter(Boolean).reverse().join(',');

const SAN_TYPES: Record<string, string> = { DNS: 'dns', URI: 'uri', email: 'email', 'IP Address': 'ip' };

/** The SANs of a certificate as `type:value` with Signet's type names (DESIGN.md "SANs in JSON"). */
function sansOf(certificate: X509Certificate): string[] {
  const text = certificate.subjectAltName;
  if (!text) return [];
  return text.split(/,\s*/).flatMap((entry) => {
    const at = entry.indexOf(':');
    const type = SAN_TYPES[entry.slice(0, at)];
    return type ? [`${type}:${entry.slice(at + 1)}`] : [];
  });
}

function matches(mapping: ClientCertificateMapping, subject: string, sans: string[]): boolean {
  if (mapping.subject !== undefined && normaliseDn(mapping.subject) !== normaliseDn(subject)) return false;
  if (mapping.san !== undefined) {
    const wanted =
      mapping.san.includes(':') && /^(dns|uri|email|ip):/i.test(mapping.san)
        ? mapping.san.replace(/^[a-z]+/i, (t) => t.toLowerCase())
        : undefined;
    const found = wanted
      ? sans.includes(wanted)
      : sans.some((san) => san.slice(san.indexOf(':') + 1) === mapping.san);
    if (!found) return false;
  }
  return mapping.subject !== undefined || mapping.san !== undefined;
}

/**
 * Whether a client certificate is one this CA issued and has revoked (issue #27), from the CA's
 * own certificates table: no CRL or OCSP fetch, and a revocation on any node holds on every
 * node at once. A certificate from another CA that shares the serial is not ours: compared by DER.
 */
export type ClientRevocationCheck = (certificateDer: Uint8Array, serial: string) => Promise<boolean>;

/** Over the certificates repository: revoked if the stored certificate with that serial is this one and revoked. */
export function revokedByThisCa(certificates: {
  findBySerial(serial: string): Promise<{ der: Uint8Array | null; status: string } | null>;
}): ClientRevocationCheck {
  return async (certificateDer, serial) => {
    let record: Awaited<ReturnType<typeof certificates.findBySerial>>;
    try {
      record = await certificates.findBySerial(serial);
    } catch (error) {
      // A serial the CA's rules could never have issued (over 20 octets...): not ours.
      if (error instanceof InvalidSerialError) return false;
      throw error;
    }
    return (
      record?.status === 'revoked' &&
      record.der !== null &&
      Buffer.from(record.der).equals(Buffer.from(certificateDer))
    );
  };
}

/**
 * Mutual TLS principals (issue #10): a client certificate that the TLS layer verified against
 * `server.tls.clientCa` and that a mapping names is a principal with that mapping's roles and
 * policies. An unverified or unmapped certificate authenticates nothing (the request may still
 * carry an API key). Checked at factory time: every mapping names a subject or a SAN and a role.
 */
export function createMtlsResolver(
  mappings: ClientCertificateMapping[],
  { revoked }: { revoked?: ClientRevocationCheck } = {},
): PrincipalResolver {
  for (const [index, mapping] of mappings.entries()) {
    if (mapping.subject === undefined && mapping.san === undefined) {
      throw new Error(`server.tls.clients[${index}]: give a subject or a san to match`);
    }
    if (mapping.roles.length === 0)
      throw new Error(`server.tls.clients[${index}]: at least one role is required`);
  }
  return async function mtlsPrincipal(c: Context<ApiEnv>): Promise<Principal | undefined> {
    const socket = (c.env as { incoming?: { socket?: TLSSocket } } | undefined)?.incoming?.socket;
    if (!socket || typeof socket.getPeerX509Certificate !== 'function' || !socket.authorized)
      return undefined;
    const peer = socket.getPeerX509Certificate();
    if (!peer) return undefined;
    const subject = subjectOf(peer);
    const sans = sansOf(peer);
    const mapping = mappings.find((m) => matches(m, subject, sans));
    if (!mapping) return undefined;
    // Fail closed: a lookup that fails refuses the request (503), it never lets it through.
    if (revoked && (await revoked(new Uint8Array(peer.raw), peer.serialNumber))) {
      throw new AppError(
        'auth.credential_invalid',
        'unauthenticated',
        'The client certificate has been revoked by this CA.',
      );
    }
    const all = mapping.roles.includes('admin') || mapping.policies.includes('*');
    return {
      id: `mtls:${subject || sans[0] || peer.fingerprint256}`,
      kind: 'mtls',
      roles: mapping.roles,
      policies: all ? '*' : mapping.policies,
    };
  };
}
