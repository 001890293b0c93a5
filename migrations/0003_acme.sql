CREATE TABLE "acme_accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"directory" text NOT NULL,
	"key_thumbprint" text NOT NULL,
	"key_jwk" jsonb NOT NULL,
	"status" text NOT NULL,
	"contact" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"terms_of_service_agreed" boolean DEFAULT false NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "acme_accounts_status_known" CHECK ("acme_accounts"."status" in ('valid', 'deactivated', 'revoked'))
);
--> statement-breakpoint
CREATE TABLE "acme_authorizations" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"identifier_type" text NOT NULL,
	"identifier_value" text NOT NULL,
	"wildcard" boolean DEFAULT false NOT NULL,
	"status" text NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "acme_authorizations_status_known" CHECK ("acme_authorizations"."status" in ('pending', 'valid', 'invalid', 'deactivated', 'expired', 'revoked')),
	CONSTRAINT "acme_authorizations_identifier_type_known" CHECK ("acme_authorizations"."identifier_type" in ('dns', 'ip'))
);
--> statement-breakpoint
CREATE TABLE "acme_challenges" (
	"id" text PRIMARY KEY NOT NULL,
	"authorization_id" text NOT NULL,
	"position" integer NOT NULL,
	"type" text NOT NULL,
	"token" text NOT NULL,
	"status" text NOT NULL,
	"validated_at" timestamp (3) with time zone,
	"error" jsonb,
	"lease_until" timestamp (3) with time zone,
	CONSTRAINT "acme_challenges_status_known" CHECK ("acme_challenges"."status" in ('pending', 'processing', 'valid', 'invalid'))
);
--> statement-breakpoint
CREATE TABLE "acme_nonces" (
	"nonce" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "acme_orders" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"status" text NOT NULL,
	"identifiers" jsonb NOT NULL,
	"authorization_ids" jsonb NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	"error" jsonb,
	"certificate_serial" text,
	"certificate_chain" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "acme_orders_status_known" CHECK ("acme_orders"."status" in ('pending', 'processing', 'valid', 'invalid'))
);
--> statement-breakpoint
ALTER TABLE "acme_authorizations" ADD CONSTRAINT "acme_authorizations_account_id_acme_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."acme_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "acme_challenges" ADD CONSTRAINT "acme_challenges_authorization_id_acme_authorizations_id_fk" FOREIGN KEY ("authorization_id") REFERENCES "public"."acme_authorizations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "acme_orders" ADD CONSTRAINT "acme_orders_account_id_acme_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."acme_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "acme_accounts_directory_key_key" ON "acme_accounts" USING btree ("directory","key_thumbprint");--> statement-breakpoint
CREATE INDEX "acme_authorizations_account_identifier_idx" ON "acme_authorizations" USING btree ("account_id","identifier_type","identifier_value","status");--> statement-breakpoint
CREATE INDEX "acme_authorizations_expiry_idx" ON "acme_authorizations" USING btree ("status","expires_at");--> statement-breakpoint
CREATE INDEX "acme_challenges_authorization_idx" ON "acme_challenges" USING btree ("authorization_id","position");--> statement-breakpoint
CREATE INDEX "acme_challenges_lease_idx" ON "acme_challenges" USING btree ("status","lease_until");--> statement-breakpoint
CREATE INDEX "acme_nonces_expires_idx" ON "acme_nonces" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "acme_orders_account_idx" ON "acme_orders" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX "acme_orders_certificate_idx" ON "acme_orders" USING btree ("certificate_serial");--> statement-breakpoint
CREATE INDEX "acme_orders_expiry_idx" ON "acme_orders" USING btree ("status","expires_at");