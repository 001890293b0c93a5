CREATE SEQUENCE "public"."owed_work_version_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1;--> statement-breakpoint
CREATE TABLE "owed_work" (
	"kind" text NOT NULL,
	"key" text NOT NULL,
	"version" bigint DEFAULT nextval('owed_work_version_seq') NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL,
	"updated_at" timestamp (3) with time zone NOT NULL,
	"not_before" timestamp (3) with time zone NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"last_attempt_at" timestamp (3) with time zone,
	CONSTRAINT "owed_work_pkey" PRIMARY KEY("kind","key")
);
--> statement-breakpoint
ALTER TABLE "idempotency_records" ADD COLUMN "owner" text;--> statement-breakpoint
ALTER TABLE "idempotency_records" ADD COLUMN "certificate_serial" text;--> statement-breakpoint
CREATE INDEX "owed_work_kind_not_before_idx" ON "owed_work" USING btree ("kind","not_before");--> statement-breakpoint
ALTER TABLE "idempotency_records" ADD CONSTRAINT "idempotency_records_certificate_serial_certificates_serial_fk" FOREIGN KEY ("certificate_serial") REFERENCES "public"."certificates"("serial") ON DELETE no action ON UPDATE no action;