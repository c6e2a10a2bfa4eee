/**
 * A short, human label for the device a session was started on, from its
 * User-Agent header: "Chrome on Linux", "Safari on iOS", "curl". A hint for
 * the "Your sessions" page, not an identification: the header is whatever the
 * client says, so the label is only ever shown as escaped text.
 */

/** Browsers, most specific first (Edge and Opera also say "Chrome", Chrome also says "Safari"). */
const BROWSERS: [RegExp, string][] = [
  [/\bEdg(?:e|A|iOS)?\//, 'Edge'],
  [/\bOPR\/|\bOpera\b/, 'Opera'],
  [/\bSamsungBrowser\//, 'Samsung Internet'],
  [/\bFirefox\/|\bFxiOS\//, 'Firefox'],
  [/\bChrom(?:e|ium)\/|\bHeadlessChrome\/|\bCriOS\//, 'Chrome'],
  [/\bVersion\/[\d.]+.*\bSafari\//, 'Safari'],
  [/^curl\//, 'curl'],
  [/^Wget\//, 'Wget'],
];

/** Operating systems, most specific first (Android also says "Linux", iOS also says "Mac OS X"). */
const SYSTEMS: [RegExp, string][] = [
  [/\bAndroid\b/, 'Android'],
  [/\b(?:iPhone|iPad|iPod)\b/, 'iOS'],
  [/\bCrOS\b/, 'ChromeOS'],
  [/\bWindows\b/, 'Windows'],
  [/\bMac OS X\b|\bMacintosh\b/, 'macOS'],
  [/\bLinux\b|\bX11\b/, 'Linux'],
];

export const UNKNOWN_DEVICE = 'Unknown device';

/**
 * "Browser on OS" from a User-Agent header; just the browser or the OS when
 * only one is recognised; "Unknown device" when neither is (or no header).
 * @example deviceLabel('Mozilla/5.0 (X11; Linux x86_64) … Chrome/126.0.0.0 Safari/537.36') // 'Chrome on Linux'
 */
export function deviceLabel(userAgent: string | undefined): string {
  // Headers are at most a few KB (Node's limit); the patterns are linear, but there is no need to read more.
  const text = (userAgent ?? '').slice(0, 512);
  const browser = BROWSERS.find(([pattern]) => pattern.test(text))?.[1];
  const system = SYSTEMS.find(([pattern]) => pattern.test(text))?.[1];
  if (browser !== undefined && system !== undefined) return `${browser} on ${system}`;
  return browser ?? system ?? UNKNOWN_DEVICE;
}
