import { runCli } from './cli.ts';

/**
 * The process: runs the command line (cli.ts) and exits with its code. A closed standard output
 * or error (`signet policy lint | head -1`) ends the output, not with a stack trace (issue #33):
 * what is left to print is dropped and the command finishes with its own exit code, so a
 * command that has started work (a revocation, a server) still ends it cleanly.
 */
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    stream.write = (() => true) as typeof stream.write;
  });
}

runCli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
