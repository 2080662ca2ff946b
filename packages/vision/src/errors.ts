/** Why an image could not be turned into pixels. Depends only on the bytes, so it is final. */
export type ImageErrorCode = 'EMPTY' | 'DECODE_FAILED' | 'TOO_LARGE';

/** An image that cannot be used: empty, not an image, corrupt, or over a limit. */
export class ImageError extends Error {
  constructor(
    readonly code: ImageErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ImageError';
  }
}

/** A backbone could not be found, downloaded, verified or loaded. */
export class BackboneError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BackboneError';
  }
}
