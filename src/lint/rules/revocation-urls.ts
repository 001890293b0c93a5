import { isIssuerCrlUrl } from '../../x509/crl-urls.ts';
import { OID } from '../../x509/oids.ts';
import { decodeAuthorityInfoAccess, decodeCrlDistributionPointUris } from '../extensions.ts';
import type { LintRule } from '../types.ts';

/**
 * RFC 5280 §4.2.1.13 and §4.2.2.1 (BR §7.1.2.7.7, §7.1.2.11.2): when the issuer publishes a CRL,
 * an OCSP responder or its certificate, the certificate points at exactly those URLs, so
 * relying parties can check its status and build its path.
 */
export const rule: LintRule = {
  id: 'revocation-urls',
  citation: 'RFC 5280 §4.2.1.13, §4.2.2.1; CA/B Forum BR §7.1.2.7.7, §7.1.2.11.2',
  severity: 'error',
  profiles: ['leaf', 'intermediate'],
  check(certificate, { issuer }) {
    const problems: string[] = [];
    const crlUrl = issuer.crlUrl;
    if (crlUrl) {
      // A sharded issuer's certificates each name one shard's CRL (src/x509/crl-urls.ts).
      const extension = certificate.extension(OID.crlDistributionPoints);
      const urls = extension ? certificate.decode(extension, decodeCrlDistributionPointUris) : [];
      if (!urls.some((url) => isIssuerCrlUrl(crlUrl, url, issuer.crlShards ?? 1)))
        problems.push(`cRLDistributionPoints does not point at ${crlUrl} or one of its shards`);
      // RFC 5280 §4.2.1.15: with delta CRLs, the certificate says where the freshest one is.
      if (issuer.deltaCrls && !certificate.extension(OID.freshestCrl))
        problems.push('the issuer publishes delta CRLs but the certificate has no freshestCRL');
    }
    const aia = certificate.extension(OID.authorityInfoAccess);
    const access = aia ? certificate.decode(aia, decodeAuthorityInfoAccess) : [];
    const has = (method: string, url: string): boolean =>
      access.some((item) => item.method === method && item.uri === url);
    if (issuer.ocspUrl && !has(OID.ocsp, issuer.ocspUrl)) {
      problems.push(`authorityInfoAccess does not name the OCSP responder ${issuer.ocspUrl}`);
    }
    if (issuer.caIssuersUrl && !has(OID.caIssuers, issuer.caIssuersUrl)) {
      problems.push(`authorityInfoAccess does not name caIssuers ${issuer.caIssuersUrl}`);
    }
    return problems;
  },
};
