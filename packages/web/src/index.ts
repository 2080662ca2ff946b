export { renderReport, confusedPairs, thumbnailsWanted, REPORT_PAIRS, PHOTOS_PER_PAIR, MAX_THUMBNAILS } from './report.js';
export { auditSection, auditThumbnailsWanted, AUDIT_SHOWN } from './audit-section.js';
export type { ReportInput, ConfusedPair } from './report.js';
export { thumbnailDataUrl, THUMBNAIL_EDGE } from './thumbnails.js';
export { loadWebModel, compareWithClassifier } from './bundle-check.js';
export { writeWebBundle, buildWebModel, tfjsBrowserScript, BundleError, BUNDLE_TOLERANCE, EMBED_LIMIT_BYTES, WEB_FORMAT_VERSION } from './bundle.js';
export type { WebModel, WebBundle } from './bundle.js';
export { serveModelFolder } from './serve.js';
export type { ServedFolder } from './serve.js';
