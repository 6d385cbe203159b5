/**
 * Captures: pcapng output, tcpdump filters compiled by libpcap, and the loop
 * that reads ports (monitors such as `vale0:01/rt`) into a capture.
 *
 * @module
 */
export { PcapngWriter, MAX_SNAPLEN, type PcapngSink, type PcapngInterface, type PcapngWriterOptions, type TsResolution } from './pcapng.js';
export { CaptureFilter, FilterError, filterUnavailableReason } from './filter.js';
export { capture, monitorRings, type CaptureRing, type CaptureSource, type CaptureOptions, type CaptureResult } from './capture.js';
