// drizzle-kit generates migrations/ from the one schema; they are written for PostgreSQL 15 and
// run unchanged on PGlite (NOTES.md "Storage"). `npx drizzle-kit generate --name <what>`.
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema/index.ts',
  out: './migrations',
  strict: true,
  verbose: true,
});
