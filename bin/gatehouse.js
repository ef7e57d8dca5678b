#!/usr/bin/env node
// The `gatehouse` command. Sources are TypeScript, loaded through tsx so that
// `npm install && npm start` needs no separate build step.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/main.ts');
