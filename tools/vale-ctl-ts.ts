#!/usr/bin/env node
/**
 * vale-ctl-ts: netmap's vale-ctl (FreeBSD's valectl) for the vale-ts
 * userspace switch — same options, same output — plus `--stats` and
 * `--json`. Talks to the netmap kernel module instead where `/dev/netmap`
 * exists and NETMAP_BACKEND is not `user` (see ./vale-ctl.ts for the
 * details and the one limit of that path).
 *
 * @module
 */
import { runValeCtl } from './vale-ctl/vale-ctl.js';

process.exitCode = await runValeCtl(process.argv.slice(2));
