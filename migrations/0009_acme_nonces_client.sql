ALTER TABLE "acme_nonces" ADD COLUMN "client" text DEFAULT 'unknown' NOT NULL;--> statement-breakpoint
CREATE INDEX "acme_nonces_client_idx" ON "acme_nonces" USING btree ("client","expires_at");