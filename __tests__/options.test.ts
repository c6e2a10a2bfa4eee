import { sessions, OptionError } from '../lib/index';
import type { SessionOptions } from '../lib/options';

const SECRET = 'x'.repeat(32);

describe('sessions() options', () => {
  const invalid: Array<[string, SessionOptions, RegExp]> = [
    ['an unknown option', { maxLifeTime: 60 } as SessionOptions, /unknown option maxLifeTime/],
    ['an unknown cookie option', { cookie: { sameSide: 'lax' } } as SessionOptions, /unknown option cookie.sameSide/],
    ['a provider that is neither name nor object', { provider: 42 as never }, /option provider is invalid: 42/],
    ['providerOptions that are not an object', { providerOptions: 'dir' as never }, /option providerOptions is invalid/],
    ['a cookie name with a space', { cookieName: 'my sid' }, /option cookieName is invalid: "my sid"/],
    ['an empty cookie name', { cookieName: '' }, /option cookieName is invalid/],
    ['a zero maxLifetime', { maxLifetime: 0 }, /option maxLifetime is invalid: 0/],
    ['a negative maxLifetime', { maxLifetime: -5 }, /option maxLifetime is invalid: -5/],
    ['a string maxLifetime', { maxLifetime: '3600' as never }, /option maxLifetime is invalid: "3600"/],
    ['an infinite absoluteLifetime', { absoluteLifetime: Infinity }, /option absoluteLifetime is invalid/],
    ['a short secret', { secret: 'too-short' }, /option secret is invalid: each secret must be a string of at least 32/],
    ['a short secret among good ones', { secret: [SECRET, 'short'] }, /option secret is invalid/],
    ['an empty secret list', { secret: [] }, /option secret is invalid/],
    ['__Host- with a domain', { cookieName: '__Host-sid', cookie: { secure: true, domain: 'example.com' } }, /option cookie.domain is invalid.*__Host-/],
    ['__Host- with another path', { cookieName: '__Host-sid', cookie: { secure: true, path: '/app' } }, /option cookie.path is invalid.*__Host-/],
    ['__Host- without secure: true', { cookieName: '__Host-sid', cookie: { secure: 'auto' } }, /option cookie.secure is invalid.*__Host-/],
    ['__Secure- without secure: true', { cookieName: '__Secure-sid' }, /option cookie.secure is invalid.*__Secure-/],
    ["sameSite 'none' with secure 'auto'", { cookie: { sameSite: 'none' } }, /option cookie.secure is invalid.*sameSite 'none' needs secure: true/],
    ['a bad sameSite', { cookie: { sameSite: 'sometimes' as never } }, /option cookie.sameSite is invalid: "sometimes"/],
    ['a bad secure', { cookie: { secure: 'yes' as never } }, /option cookie.secure is invalid/],
    ['a path without a leading slash', { cookie: { path: 'app' } }, /option cookie.path is invalid/],
    ['a path with a semicolon', { cookie: { path: '/a;b' } }, /option cookie.path is invalid/],
    ['a bad priority', { cookie: { priority: 'urgent' as never } }, /option cookie.priority is invalid/],
    ['partitioned without secure', { cookie: { partitioned: true } }, /option cookie.secure is invalid.*partitioned/],
    ['a non-boolean httpOnly', { cookie: { httpOnly: 'true' as never } }, /option cookie.httpOnly is invalid/],
    ['an empty transports list', { transports: [] }, /option transports is invalid/],
    ['an unknown transport', { transports: ['cookie', 'smoke-signal' as never] }, /option transports is invalid.*"smoke-signal"/],
    ['a transport twice', { transports: ['cookie', 'cookie'] }, /option transports is invalid.*twice/],
    ['a bad header name', { headerName: 'x session' }, /option headerName is invalid/],
    ['an empty query parameter', { queryParam: '' }, /option queryParam is invalid/],
    ['a non-boolean saveUninitialized', { saveUninitialized: 1 as never }, /option saveUninitialized is invalid/],
    ['a negative touchAfter', { touchAfter: -1 }, /option touchAfter is invalid/],
    ['touchAfter longer than maxLifetime', { maxLifetime: 60, touchAfter: 61 }, /option touchAfter is invalid.*exceed maxLifetime/],
    ['a zero gcInterval', { gcInterval: 0 }, /option gcInterval is invalid/],
    ['a gcInterval no timer can wait', { gcInterval: 3e6 }, /option gcInterval is invalid/],
    ['a genid that is not a function', { genid: 'uuid' as never }, /option genid is invalid: "uuid" \(must be a function\)/],
    ['an onError that is not a function', { onError: true as never }, /option onError is invalid/],
    ['a provider object missing methods', { provider: { read: async () => undefined } as never }, /provider is not a Provider: missing create/],
  ];

  it.each(invalid)('throws at start-up for %s, naming the option', (_what, options, message) => {
    expect(() => sessions(options)).toThrow(OptionError);
    expect(() => sessions(options)).toThrow(message);
  });

  it('throws for options that are not an object', () => {
    expect(() => sessions('memory' as never)).toThrow(/options must be an object/);
  });

  const valid: Array<[string, SessionOptions]> = [
    ['no options at all', {}],
    ['the README example', { provider: 'memory', cookieName: 'gosessionid', maxLifetime: 3600 }],
    ['absoluteLifetime shorter than maxLifetime (it simply wins)', { maxLifetime: 3600, absoluteLifetime: 60 }],
    ['a __Host- cookie done right', { cookieName: '__Host-sid', cookie: { secure: true, path: '/' } }],
    ["sameSite 'none' with secure: true", { cookie: { sameSite: 'none', secure: true } }],
    ['sameSite false', { cookie: { sameSite: false } }],
    ['touchAfter 0', { touchAfter: 0 }],
    ['every transport', { transports: ['query', 'header', 'cookie'], headerName: 'X-Token', queryParam: 'token' }],
    ['rotating secrets', { secret: [SECRET, 'y'.repeat(40)] }],
  ];

  it.each(valid)('accepts %s', async (_what, options) => {
    const middleware = sessions(options);
    expect(typeof middleware).toBe('function');
    expect(middleware.length).toBe(3);
    await middleware.manager.close();
  });

  it('derives touchAfter from maxLifetime', () => {
    expect(sessions({ maxLifetime: 600 }).manager.options.touchAfterMs).toBe(60_000);
  });
});
