// @peculiar/x509 needs the Reflect metadata polyfill before it is first imported (NOTES.md).
import 'reflect-metadata';
