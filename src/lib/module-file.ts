import { fileURLToPath } from 'node:url';

/**
 * The file of a project module loaded by computed path (a CLI command chosen at run time). The
 * project runs from its TypeScript sources under tsx (development, tests) and from the compiled
 * `dist/` (npm start, the packed install), where every `.ts` is a `.js`; tsc rewrites only
 * literal import specifiers, so computed ones take the extension of the module asking.
 */
export function moduleFile(relativeWithoutExtension: string, base: string | URL): string {
  const extension = String(base).endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`${relativeWithoutExtension}${extension}`, base));
}
