import { TAG } from '../../x509/der.ts';
import type { CrlLintRule } from '../crl-types.ts';

const expectedTagOfYear = (year: number) =>
  year >= 1950 && year <= 2049 ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
const expectedTag = (date: Date) => expectedTagOfYear(date.getUTCFullYear());

/**
 * RFC 5280 §5.1.2.5: conforming CRL issuers MUST include nextUpdate, later than thisUpdate;
 * §5.1.2.4-§5.1.2.6: thisUpdate, nextUpdate and each revocationDate are UTCTime through 2049 and
 * GeneralizedTime from 2050.
 */
export const rule: CrlLintRule = {
  id: 'crl-times',
  citation: 'RFC 5280 §5.1.2.4, §5.1.2.5, §5.1.2.6',
  severity: 'error',
  check(crl) {
    const out: string[] = [];
    if (crl.thisUpdateTag !== expectedTag(crl.thisUpdate)) out.push('thisUpdate has the wrong time type');
    if (!crl.nextUpdate) out.push('the CRL has no nextUpdate');
    else {
      if (crl.nextUpdateTag !== expectedTag(crl.nextUpdate)) out.push('nextUpdate has the wrong time type');
      if (crl.nextUpdate.getTime() <= crl.thisUpdate.getTime())
        out.push('nextUpdate is not after thisUpdate');
    }
    for (const entry of crl.entries()) {
      if (entry.revocationDateTag !== expectedTagOfYear(entry.revocationYear)) {
        out.push(
          `the revocationDate of ${Buffer.from(entry.serial).toString('hex')} has the wrong time type`,
        );
        break;
      }
    }
    return out;
  },
};
