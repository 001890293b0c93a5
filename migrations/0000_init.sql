CREATE TABLE "api_keys" (
	"id" text PRIMARY KEY NOT NULL,
	"secret_sha256" "bytea" NOT NULL,
	"roles" text[] NOT NULL,
	"policies" text[] DEFAULT '{}'::text[] NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"expires_at" timestamp (3) with time zone,
	"revoked_at" timestamp (3) with time zone,
	"created_by" text,
	CONSTRAINT "api_keys_secret_sha256_length" CHECK (octet_length("api_keys"."secret_sha256") = 32),
	CONSTRAINT "api_keys_roles_known" CHECK ("api_keys"."roles" <@ array['issuer', 'revoker', 'auditor', 'admin']::text[]),
	CONSTRAINT "api_keys_id_format" CHECK ("api_keys"."id" ~ '^[A-Za-z0-9_-]{1,64}$')
);
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"id" bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "audit_events_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"node_id" text NOT NULL,
	"seq" bigint NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"target" text,
	"decision" text NOT NULL,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"prev_hash" "bytea" NOT NULL,
	"hash" "bytea" NOT NULL,
	CONSTRAINT "audit_events_decision_known" CHECK ("audit_events"."decision" in ('allowed', 'denied', 'failed')),
	CONSTRAINT "audit_events_seq_positive" CHECK ("audit_events"."seq" > 0),
	CONSTRAINT "audit_events_hash_lengths" CHECK (octet_length("audit_events"."hash") = 32 and octet_length("audit_events"."prev_hash") = 32)
);
--> statement-breakpoint
CREATE TABLE "audit_heads" (
	"node_id" text PRIMARY KEY NOT NULL,
	"seq" bigint NOT NULL,
	"hash" "bytea" NOT NULL,
	CONSTRAINT "audit_heads_hash_length" CHECK (octet_length("audit_heads"."hash") = 32)
);
--> statement-breakpoint
CREATE TABLE "certificates" (
	"serial" text PRIMARY KEY NOT NULL,
	"issuer_id" text NOT NULL,
	"policy" text NOT NULL,
	"requester" text NOT NULL,
	"subject" text NOT NULL,
	"sans" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"spki_sha256" "bytea",
	"not_before" timestamp (3) with time zone NOT NULL,
	"not_after" timestamp (3) with time zone NOT NULL,
	"status" text NOT NULL,
	"crl_shard" integer DEFAULT 0 NOT NULL,
	"tbs_sha256" "bytea" NOT NULL,
	"csr_sha256" "bytea",
	"der" "bytea",
	"failure_reason" text,
	"created_at" timestamp (3) with time zone NOT NULL,
	"issued_at" timestamp (3) with time zone,
	"revoked_at" timestamp (3) with time zone,
	"revocation_reason" text,
	"invalidity_date" timestamp (3) with time zone,
	"status_changed_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "certificates_serial_canonical" CHECK ("certificates"."serial" ~ '^[0-9a-f]{2,40}$' and length("certificates"."serial") % 2 = 0 and "certificates"."serial" !~ '^00([0-7]|$)'),
	CONSTRAINT "certificates_status_known" CHECK ("certificates"."status" in ('pending', 'good', 'revoked', 'failed')),
	CONSTRAINT "certificates_tbs_sha256_length" CHECK (octet_length("certificates"."tbs_sha256") = 32),
	CONSTRAINT "certificates_csr_sha256_length" CHECK ("certificates"."csr_sha256" is null or octet_length("certificates"."csr_sha256") = 32),
	CONSTRAINT "certificates_spki_sha256_length" CHECK ("certificates"."spki_sha256" is null or octet_length("certificates"."spki_sha256") = 32),
	CONSTRAINT "certificates_good_has_der" CHECK ("certificates"."status" <> 'good' or "certificates"."der" is not null),
	CONSTRAINT "certificates_revoked_has_details" CHECK (("certificates"."status" = 'revoked') = ("certificates"."revoked_at" is not null and "certificates"."revocation_reason" is not null)),
	CONSTRAINT "certificates_revocation_reason_known" CHECK ("certificates"."revocation_reason" is null or "certificates"."revocation_reason" in ('unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn', 'aACompromise')),
	CONSTRAINT "certificates_crl_shard_range" CHECK ("certificates"."crl_shard" >= 0)
);
--> statement-breakpoint
CREATE TABLE "crl_numbers" (
	"issuer_id" text NOT NULL,
	"shard" integer NOT NULL,
	"last_number" bigint NOT NULL,
	CONSTRAINT "crl_numbers_pkey" PRIMARY KEY("issuer_id","shard"),
	CONSTRAINT "crl_numbers_positive" CHECK ("crl_numbers"."last_number" > 0)
);
--> statement-breakpoint
CREATE TABLE "crls" (
	"issuer_id" text NOT NULL,
	"shard" integer NOT NULL,
	"kind" text NOT NULL,
	"crl_number" bigint NOT NULL,
	"base_crl_number" bigint,
	"this_update" timestamp (3) with time zone NOT NULL,
	"next_update" timestamp (3) with time zone NOT NULL,
	"der" "bytea" NOT NULL,
	"sha256" "bytea" NOT NULL,
	"generated_at" timestamp (3) with time zone NOT NULL,
	"generated_by" text,
	CONSTRAINT "crls_pkey" PRIMARY KEY("issuer_id","shard","kind"),
	CONSTRAINT "crls_kind_known" CHECK ("crls"."kind" in ('full', 'delta')),
	CONSTRAINT "crls_delta_has_base" CHECK (("crls"."kind" = 'delta') = ("crls"."base_crl_number" is not null)),
	CONSTRAINT "crls_sha256_length" CHECK (octet_length("crls"."sha256") = 32)
);
--> statement-breakpoint
CREATE TABLE "idempotency_records" (
	"credential_id" text NOT NULL,
	"key" text NOT NULL,
	"request_hash" "bytea" NOT NULL,
	"state" text NOT NULL,
	"response_status" integer,
	"response_headers" jsonb,
	"response_body" "bytea",
	"created_at" timestamp (3) with time zone NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "idempotency_records_pkey" PRIMARY KEY("credential_id","key"),
	CONSTRAINT "idempotency_records_state_known" CHECK ("idempotency_records"."state" in ('in_flight', 'done')),
	CONSTRAINT "idempotency_records_done_has_response" CHECK ("idempotency_records"."state" <> 'done' or ("idempotency_records"."response_status" is not null and "idempotency_records"."response_body" is not null))
);
--> statement-breakpoint
CREATE TABLE "issuers" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"parent_id" text,
	"certificate_der" "bytea" NOT NULL,
	"key_uri" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"crl_urls" text[] DEFAULT '{}'::text[] NOT NULL,
	"ocsp_urls" text[] DEFAULT '{}'::text[] NOT NULL,
	"ca_issuers_urls" text[] DEFAULT '{}'::text[] NOT NULL,
	"crl_shards" integer DEFAULT 1 NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "issuers_id_slug" CHECK ("issuers"."id" ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'),
	CONSTRAINT "issuers_status_known" CHECK ("issuers"."status" in ('active', 'disabled', 'retired')),
	CONSTRAINT "issuers_crl_shards_range" CHECK ("issuers"."crl_shards" between 1 and 65536)
);
--> statement-breakpoint
CREATE TABLE "ocsp_responders" (
	"id" text PRIMARY KEY NOT NULL,
	"issuer_id" text NOT NULL,
	"certificate_der" "bytea" NOT NULL,
	"key_uri" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"not_before" timestamp (3) with time zone NOT NULL,
	"not_after" timestamp (3) with time zone NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "ocsp_responders_id_slug" CHECK ("ocsp_responders"."id" ~ '^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$'),
	CONSTRAINT "ocsp_responders_status_known" CHECK ("ocsp_responders"."status" in ('active', 'retired')),
	CONSTRAINT "ocsp_responders_validity" CHECK ("ocsp_responders"."not_before" < "ocsp_responders"."not_after")
);
--> statement-breakpoint
CREATE TABLE "replay_guard" (
	"scope" text NOT NULL,
	"jti" text NOT NULL,
	"expires_at" timestamp (3) with time zone NOT NULL,
	CONSTRAINT "replay_guard_pkey" PRIMARY KEY("scope","jti")
);
--> statement-breakpoint
ALTER TABLE "certificates" ADD CONSTRAINT "certificates_issuer_id_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "crl_numbers" ADD CONSTRAINT "crl_numbers_issuer_id_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "crls" ADD CONSTRAINT "crls_issuer_id_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "issuers" ADD CONSTRAINT "issuers_parent_id_issuers_id_fk" FOREIGN KEY ("parent_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ocsp_responders" ADD CONSTRAINT "ocsp_responders_issuer_id_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "audit_events_node_seq_key" ON "audit_events" USING btree ("node_id","seq");--> statement-breakpoint
CREATE INDEX "audit_events_at_idx" ON "audit_events" USING btree ("at");--> statement-breakpoint
CREATE INDEX "audit_events_actor_idx" ON "audit_events" USING btree ("actor","id");--> statement-breakpoint
CREATE INDEX "audit_events_target_idx" ON "audit_events" USING btree ("target","id");--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_tbs_sha256_key" ON "certificates" USING btree ("tbs_sha256");--> statement-breakpoint
CREATE INDEX "certificates_created_idx" ON "certificates" USING btree ("created_at","serial");--> statement-breakpoint
CREATE INDEX "certificates_requester_created_idx" ON "certificates" USING btree ("requester","created_at","serial");--> statement-breakpoint
CREATE INDEX "certificates_issuer_status_not_after_idx" ON "certificates" USING btree ("issuer_id","status","not_after");--> statement-breakpoint
CREATE INDEX "certificates_spki_sha256_idx" ON "certificates" USING btree ("spki_sha256");--> statement-breakpoint
CREATE INDEX "certificates_pending_created_idx" ON "certificates" USING btree ("created_at") WHERE "certificates"."status" = 'pending';--> statement-breakpoint
CREATE INDEX "certificates_revoked_crl_idx" ON "certificates" USING btree ("issuer_id","crl_shard","serial") WHERE "certificates"."status" = 'revoked';--> statement-breakpoint
CREATE INDEX "certificates_revoked_changed_idx" ON "certificates" USING btree ("issuer_id","crl_shard","status_changed_at") WHERE "certificates"."status" = 'revoked';--> statement-breakpoint
CREATE INDEX "crls_next_update_idx" ON "crls" USING btree ("next_update");--> statement-breakpoint
CREATE INDEX "idempotency_records_expires_idx" ON "idempotency_records" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "ocsp_responders_issuer_idx" ON "ocsp_responders" USING btree ("issuer_id","status","not_after");--> statement-breakpoint
CREATE INDEX "replay_guard_expires_idx" ON "replay_guard" USING btree ("expires_at");