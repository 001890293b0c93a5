CREATE TABLE "acme_eab_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"directory" text NOT NULL,
	"policies" jsonb NOT NULL,
	"sealed" "bytea" NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"expires_at" timestamp (3) with time zone,
	"account_id" text,
	"used_at" timestamp (3) with time zone
);
--> statement-breakpoint
ALTER TABLE "acme_accounts" ADD COLUMN "eab_key_id" text;--> statement-breakpoint
ALTER TABLE "acme_accounts" ADD COLUMN "policies" jsonb;--> statement-breakpoint
ALTER TABLE "acme_orders" ADD COLUMN "profile" text;--> statement-breakpoint
ALTER TABLE "acme_orders" ADD COLUMN "replaces" text;--> statement-breakpoint
CREATE UNIQUE INDEX "acme_eab_keys_account_key" ON "acme_eab_keys" USING btree ("account_id");--> statement-breakpoint
CREATE UNIQUE INDEX "acme_orders_replaces_key" ON "acme_orders" USING btree ("replaces") WHERE "acme_orders"."status" <> 'invalid';