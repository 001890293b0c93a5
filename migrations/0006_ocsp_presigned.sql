CREATE TABLE "ocsp_responses" (
	"cert_id_sha256" "bytea" PRIMARY KEY NOT NULL,
	"serial" text NOT NULL,
	"issuer_id" text NOT NULL,
	"cert_id_der" "bytea" NOT NULL,
	"response_der" "bytea" NOT NULL,
	"cert_status" text NOT NULL,
	"produced_at" timestamp (3) with time zone NOT NULL,
	"next_update" timestamp (3) with time zone NOT NULL,
	"stale" boolean DEFAULT false NOT NULL,
	CONSTRAINT "ocsp_responses_cert_id_sha256_length" CHECK (octet_length("ocsp_responses"."cert_id_sha256") = 32),
	CONSTRAINT "ocsp_responses_cert_status_known" CHECK ("ocsp_responses"."cert_status" in ('good', 'revoked'))
);
--> statement-breakpoint
ALTER TABLE "ocsp_responses" ADD CONSTRAINT "ocsp_responses_issuer_id_issuers_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."issuers"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ocsp_responses_serial_idx" ON "ocsp_responses" USING btree ("serial");