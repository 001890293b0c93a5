/**
 * RFC 5280 §6.1 certification path validation of an issuer's chain, with pkijs's chain
 * validation engine doing the work it does well — building the path from the candidates to a
 * trust anchor, every signature (Ed25519 too, through SignetCryptoEngine), validity at the given
 * time, name chaining, basicConstraints and keyUsage of every issuer, unrecognised critical
 * extensions of issuers, certificate policies — and this module adding what pkijs 4 leaves out
 * or gets wrong for Signet's uses:
 *
 * - name constraints along the whole path: pkijs joins the permitted subtrees of every CA into one
 *   union, where RFC 5280 §6.1.4 (g) intersects them (a name must lie within the permitted
 *   subtrees of every CA above it), and it ignores the trust anchor's own constraints, which
 *   OpenSSL applies; here each CA's constraints, the anchor's included, are checked on every
 *   certificate below it (§6.1.3 (b), (c));
 * - pathLenConstraint (§6.1.4 (l), (m)), which pkijs does not check;
 * - the target itself: no unrecognised critical extension (§6.1.5 (f)) and, when it is a CA that
 *   will issue, basicConstraints cA and keyCertSign, which pkijs checks only for the CAs above it;
 * - the outer signatureAlgorithm equal to the TBS signature field (§4.1.1.2).
 *
 * Pure: no clock (the caller passes the time), no file, no database.
 */

import * as pkijs from 'pkijs';
import { SignetCryptoEngine } from './crypto-engine.ts';
import { bitStringBytes, content, contextTag, encoding, equalBytes, readDer } from './der.ts';
import { type CertificateFields, readBasicConstraints, readCertificateFields } from './issuer.ts';
import {
  type NameConstraintsInfo,
  type NameToCheck,
  nameConstraintViolations,
  parseNameConstraints,
} from './name-constraints.ts';
import { decodeGeneralName, decodeName } from './names.ts';
import { OID, SUBJECT_ATTRIBUTE_OIDS } from './oids.ts';

export type PathValidationReason =
  | 'malformed'
  | 'no_path'
  | 'expired'
  | 'not_yet_valid'
  | 'not_ca'
  | 'path_length'
  | 'name_constraints'
  | 'critical_extension'
  | 'signature_invalid'
  | 'policy'
  | 'invalid';

/** The path does not validate; `reason` is stable, the message names the certificate and the rule. */
export class PathValidationError extends Error {
  override readonly name = 'PathValidationError';
  constructor(
    readonly reason: PathValidationReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface PathValidationInput {
  /** The certificate whose path is validated, DER. */
  certificate: Uint8Array;
  /** Candidate CA certificates between it and an anchor, DER, in any order; unused ones are ignored. */
  intermediates?: readonly Uint8Array[];
  /** Trust anchors: CA certificates, DER (self-signed roots, or any CA the caller trusts as such). */
  trustAnchors: readonly Uint8Array[];
  /** The validation time (RFC 5280 §6.1.1 (b)). */
  time: Date;
  /**
   * The certificate is a CA that is going to issue (an issuer being loaded or activated): it must
   * itself be a CA with keyCertSign, and it counts against the pathLenConstraint of the CAs above.
   */
  targetIsCa?: boolean;
}

export interface ValidatedPath {
  /** DER, from the certificate up to and including the trust anchor. */
  path: Uint8Array[];
  /** Index into `trustAnchors` of the anchor the path reached. */
  anchorIndex: number;
  /**
   * The name constraints of each CA on the path above the certificate, nearest first, anchor last
   * (empty when none has any): what an issuer must hold a leaf's names to, beyond its own.
   */
  superiorNameConstraints: NameConstraintsInfo[];
}

interface Parsed {
  der: Uint8Array;
  pkijs: pkijs.Certificate;
  fields: CertificateFields;
  label: string;
}

function parse(der: Uint8Array, what: string): Parsed {
  try {
    const bytes = Uint8Array.from(der);
    const fields = readCertificateFields(bytes);
    const certificate = pkijs.Certificate.fromBER(bytes);
    return { der: bytes, pkijs: certificate, fields, label: labelOf(fields, what) };
  } catch (error) {
    throw new PathValidationError('malformed', `${what} is not a readable X.509 certificate`, {
      cause: error,
    });
  }
}

/** "the certificate of CN=Example Issuing CA", for messages. */
function labelOf(fields: CertificateFields, what: string): string {
  try {
    const attributes = decodeName(fields.subject).flat();
    const cn = attributes.find((a) => a.oid === SUBJECT_ATTRIBUTE_OIDS.CN) ?? attributes.at(-1);
    return cn ? `${what} (${cn.type ?? cn.oid}=${cn.value})` : what;
  } catch {
    return what;
  }
}

const isSelfIssued = (c: Parsed) => equalBytes(content(c.fields.subject), content(c.fields.issuer));

// ---- What pkijs does -----------------------------------------------------------------------------

/** pkijs's result codes (CertificateChainValidationEngine) to reasons. */
function reasonOf(code: number, message: string): PathValidationReason {
  if ([3, 4, 5, 7, 13, 14].includes(code)) return 'not_ca';
  if (code === 6) return 'critical_extension';
  if (code === 8) return 'expired';
  if ([21, 41, 42].includes(code)) return 'name_constraints';
  if ([9, 10, 60, 97].includes(code) || /no valid certificate paths|unable to find/i.test(message))
    return 'no_path';
  if ([98, 99].includes(code) || /polic/i.test(message)) return 'policy';
  return 'invalid';
}

/** The first certificate outside its validity at `time`, for a message better than pkijs's. */
function timeProblem(certificates: Parsed[], time: Date): PathValidationError | undefined {
  for (const c of certificates) {
    if (time < c.fields.notBefore)
      return new PathValidationError('not_yet_valid', `${c.label} is not valid yet (RFC 5280 §6.1.3 (a)(2))`);
    if (time > c.fields.notAfter)
      return new PathValidationError('expired', `${c.label} has expired (RFC 5280 §6.1.3 (a)(2))`);
  }
  return undefined;
}

async function buildAndVerify(target: Parsed, candidates: Parsed[], anchors: Parsed[], time: Date) {
  const crypto = new SignetCryptoEngine();
  const engine = new pkijs.CertificateChainValidationEngine({
    trustedCerts: anchors.map((a) => a.pkijs),
    // pkijs takes the last of `certs` as the certificate to validate.
    certs: [...candidates.map((c) => c.pkijs), target.pkijs],
    checkDate: time,
  });
  const all = [target, ...candidates, ...anchors];
  // pkijs hands back its own objects: map them to ours by their TBS bytes.
  const ours = (path: pkijs.Certificate[]) =>
    path.map((certificate) => {
      const tbs = new Uint8Array(certificate.tbsView);
      const found = all.find((c) => equalBytes(new Uint8Array(c.pkijs.tbsView), tbs));
      if (!found) throw new PathValidationError('invalid', 'pkijs returned a certificate it was not given');
      return found;
    });
  const result = await engine.verify({}, crypto);
  if (!result.result) {
    const reason = reasonOf(result.resultCode, result.resultMessage);
    if (reason === 'expired') {
      const precise = timeProblem(all, time);
      if (precise) throw precise;
    }
    if (reason === 'name_constraints' && result.certificatePath) {
      // Name the CA whose constraint is broken, which pkijs's message does not.
      checkNameConstraints(ours(result.certificatePath));
    }
    throw new PathValidationError(
      reason,
      `the path of ${target.label} does not validate: ${result.resultMessage}`,
      result.error ? { cause: result.error } : undefined,
    );
  }
  return ours((result.certificatePath ?? engine.certs) as pkijs.Certificate[]);
}

// ---- What this module adds ----------------------------------------------------------------------

/** RFC 5280 §4.1.1.2: the outer signatureAlgorithm is the TBS signature field. */
function checkSignatureFields(path: Parsed[]): void {
  for (const c of path) {
    const [, outer] = readDer(c.der, { maxDepth: 16 }).children;
    if (!outer || !equalBytes(encoding(outer), encoding(c.fields.signature))) {
      throw new PathValidationError(
        'signature_invalid',
        `${c.label}: its signatureAlgorithm differs from the signature field of its TBSCertificate (RFC 5280 §4.1.1.2)`,
      );
    }
  }
}

/** RFC 5280 §4.2.1.9 and §4.2.1.3: a certificate that may issue certificates. */
function checkIssuing(c: Parsed): void {
  const basic = c.fields.extensions.get(OID.basicConstraints);
  if (!basic || !readBasicConstraints(basic.value).ca) {
    throw new PathValidationError('not_ca', `${c.label} is not a CA certificate (basicConstraints cA)`);
  }
  const ku = c.fields.extensions.get(OID.keyUsage);
  if (ku) {
    const bits = bitStringBytes(readDer(ku.value, { maxDepth: 1 })).bytes;
    // keyCertSign is bit 5 (RFC 5280 §4.2.1.3).
    if (((bits[0] ?? 0) & 0x04) === 0) {
      throw new PathValidationError('not_ca', `${c.label} has no keyCertSign key usage`);
    }
  }
}

/** The extensions a certificate may mark critical and Signet understands (RFC 5280 §6.1.4 (o), §6.1.5 (f)). */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.nameConstraints,
  OID.certificatePolicies,
  OID.policyConstraints,
  OID.inhibitAnyPolicy,
  '2.5.29.33', // policyMappings
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

function checkCriticalExtensions(c: Parsed): void {
  for (const extension of c.fields.extensionList) {
    if (extension.critical && !UNDERSTOOD.has(extension.oid)) {
      throw new PathValidationError(
        'critical_extension',
        `${c.label} has a critical extension ${extension.oid} that is not understood (RFC 5280 §6.1.4 (o))`,
      );
    }
  }
}

/**
 * RFC 5280 §4.2.1.9, §6.1.4 (l), (m): a CA's pathLenConstraint bounds the non-self-issued CA
 * certificates below it; the target counts when it is a CA that will issue, a leaf does not.
 */
function checkPathLengths(path: Parsed[], targetIsCa: boolean): void {
  for (let j = 1; j < path.length; j++) {
    const basic = path[j]!.fields.extensions.get(OID.basicConstraints);
    const pathLen = basic ? readBasicConstraints(basic.value).pathLen : undefined;
    if (pathLen === undefined) continue;
    const below = path.slice(targetIsCa ? 0 : 1, j).filter((c) => !isSelfIssued(c)).length;
    if (below > pathLen) {
      throw new PathValidationError(
        'path_length',
        `${path[j]!.label} allows ${pathLen} CA certificate(s) below it (pathLenConstraint), the path has ${below} (RFC 5280 §6.1.4 (m))`,
      );
    }
  }
}

function nameConstraintsOf(c: Parsed): NameConstraintsInfo | undefined {
  const extension = c.fields.extensions.get(OID.nameConstraints);
  if (!extension) return undefined;
  try {
    return parseNameConstraints(extension.value);
  } catch (error) {
    throw new PathValidationError('malformed', `${c.label} has a malformed nameConstraints extension`, {
      cause: error,
    });
  }
}

/** The names RFC 5280 §6.1.3 (b), (c) hold to the constraints: subject DN, emailAddress, SANs. */
function namesOf(c: Parsed): { names: NameToCheck[]; otherForms: number[] } {
  const names: NameToCheck[] = [];
  const otherForms: number[] = [];
  const rdns = decodeName(c.fields.subject);
  if (rdns.length > 0) names.push({ type: 'directoryName', value: 'subject', rdns, source: 'subject' });
  for (const attribute of rdns.flat()) {
    if (attribute.oid === OID.emailAddress)
      names.push({ type: 'email', value: attribute.value, source: 'subject emailAddress' });
  }
  const san = c.fields.extensions.get(OID.subjectAltName);
  for (const name of san ? readDer(san.value, { maxDepth: 6 }).children : []) {
    if (name.tag === contextTag(4, true) && name.children[0]) {
      names.push({
        type: 'directoryName',
        value: 'subjectAltName directoryName',
        rdns: decodeName(name.children[0]),
        source: 'subjectAltName',
      });
      continue;
    }
    try {
      const decoded = decodeGeneralName(name);
      names.push({ type: decoded.type, value: decoded.value, source: 'subjectAltName' });
    } catch {
      otherForms.push(name.tag);
    }
  }
  return { names, otherForms };
}

/**
 * RFC 5280 §6.1.3 (b), (c) with §6.1.4 (g): every certificate's names lie within the permitted and
 * outside the excluded subtrees of every CA above it (each CA's separately: the intersection), a
 * self-issued intermediate excepted. A constrained name form we cannot evaluate is refused
 * (§4.2.1.10: process the constraint or reject the certificate).
 */
function checkNameConstraints(path: Parsed[]): void {
  const constraints = path.map(nameConstraintsOf);
  for (let k = 0; k < path.length - 1; k++) {
    const c = path[k]!;
    if (k > 0 && isSelfIssued(c)) continue;
    const { names, otherForms } = namesOf(c);
    for (let j = k + 1; j < path.length; j++) {
      const nc = constraints[j];
      if (!nc) continue;
      const violations = nameConstraintViolations(nc, names);
      const unevaluated = [...nc.permitted, ...nc.excluded].filter(
        (base) => base.type === 'other' && otherForms.includes(base.tag),
      );
      if (unevaluated.length > 0) violations.push('a name form it constrains cannot be evaluated');
      if (violations.length > 0) {
        throw new PathValidationError(
          'name_constraints',
          `${c.label} breaks the name constraints of ${path[j]!.label}: ${violations.join('; ')} (RFC 5280 §4.2.1.10, §6.1.3)`,
        );
      }
    }
  }
}

// ---- The validation -----------------------------------------------------------------------------

/** Validates the path of `certificate` to one of `trustAnchors` at `time`; throws PathValidationError. */
export async function validateCertificatePath(input: PathValidationInput): Promise<ValidatedPath> {
  const target = parse(input.certificate, 'the certificate');
  const anchors = input.trustAnchors.map((der, i) => parse(der, `trust anchor ${i + 1}`));
  const candidates = (input.intermediates ?? [])
    .map((der, i) => parse(der, `intermediate ${i + 1}`))
    .filter((c) => !anchors.some((a) => equalBytes(a.der, c.der)) && !equalBytes(c.der, target.der));
  if (anchors.length === 0) throw new PathValidationError('no_path', 'there is no trust anchor');
  if (input.targetIsCa) checkIssuing(target);
  checkCriticalExtensions(target);

  let path: Parsed[];
  const anchorItself = anchors.findIndex((a) => equalBytes(a.der, target.der));
  if (anchorItself >= 0) {
    // The certificate is itself an anchor (a root issuer): trusted as given, held to its validity.
    const problem = timeProblem([target], input.time);
    if (problem) throw problem;
    path = [target];
  } else {
    path = await buildAndVerify(target, candidates, anchors, input.time);
  }
  checkSignatureFields(path);
  checkPathLengths(path, input.targetIsCa === true);
  checkNameConstraints(path);

  const anchor = path.at(-1)!;
  return {
    path: path.map((c) => c.der),
    anchorIndex: anchors.findIndex((a) => a === anchor || equalBytes(a.der, anchor.der)),
    superiorNameConstraints: path.slice(1).flatMap((c) => {
      const nc = nameConstraintsOf(c);
      return nc ? [nc] : [];
    }),
  };
}
