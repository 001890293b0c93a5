import type { CeremonyConfig } from './config.ts';

/** Where a ceremony writes: every output path its configuration names, and the transcript's companions. */

/** Outputs of a ceremony by their config path, in the order they are written. */
export function outputPaths(config: CeremonyConfig): { at: string; path: string }[] {
  const list: { at: string; path: string }[] = [];
  const add = (at: string, path: string | undefined) => {
    if (path !== undefined) list.push({ at, path });
  };
  switch (config['ceremony-type']) {
    case 'root':
      add(
        'offline-partition.dir',
        config['offline-partition'].create ? config['offline-partition'].dir : undefined,
      );
      for (const [i, c] of (config['offline-partition'].create?.custodians ?? []).entries()) {
        add(`offline-partition.create.custodians.${i}.share-path`, c['share-path']);
      }
      add('outputs.public-key-path', config.outputs['public-key-path']);
      add('outputs.certificate-path', config.outputs['certificate-path']);
      break;
    case 'key':
      add('outputs.public-key-path', config.outputs['public-key-path']);
      break;
    case 'intermediate':
    case 'cross-certificate':
      add('outputs.certificate-path', config.outputs['certificate-path']);
      break;
    case 'crl':
      add('outputs.crl-path', config.outputs['crl-path']);
      break;
    case 'hierarchy':
      add(
        'offline-partition.dir',
        config['offline-partition'].create ? config['offline-partition'].dir : undefined,
      );
      for (const [i, c] of (config['offline-partition'].create?.custodians ?? []).entries()) {
        add(`offline-partition.create.custodians.${i}.share-path`, c['share-path']);
      }
      add('root.outputs.public-key-path', config.root.outputs['public-key-path']);
      add('root.outputs.certificate-path', config.root.outputs['certificate-path']);
      config.intermediates.forEach((i, n) => {
        add(`intermediates.${n}.outputs.public-key-path`, i.outputs['public-key-path']);
        add(`intermediates.${n}.outputs.certificate-path`, i.outputs['certificate-path']);
      });
      add('crl.outputs.crl-path', config.crl.outputs['crl-path']);
      break;
  }
  const t = config.transcript.path;
  add('transcript.path', t);
  add('transcript.path', transcriptMarkdownPath(t));
  add('transcript.path', transcriptSignaturePath(t));
  add('transcript.path', transcriptCmsPath(t));
  return list;
}

export const transcriptMarkdownPath = (jsonPath: string) => jsonPath.replace(/\.json$/, '.md');

export const transcriptSignaturePath = (jsonPath: string) => `${jsonPath}.sig`;

/** The detached CMS SignedData (RFC 5652), written when the signing key has a certificate. */
export const transcriptCmsPath = (jsonPath: string) => `${jsonPath}.p7s`;
