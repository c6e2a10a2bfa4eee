import request from 'supertest';
import { storageKey } from '../lib/manager';
import { buildApp } from './support/app';
import { cookiePair, EXPRESS_VERSIONS, idOf, SECRET } from './support/http';
import { RecordingProvider } from './support/recording-provider';

describe.each(EXPRESS_VERSIONS)('hostile input on %s', (_name, express) => {
  let provider: RecordingProvider;
  beforeEach(() => {
    provider = new RecordingProvider();
  });

  describe('malformed ids', () => {
    const malformed = [
      'sid=',
      'sid=short',
      `sid=${'a'.repeat(257)}`,
      'sid=../../etc/passwd-aaaaaaaaaaaaaa',
      'sid=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00',
      'sid=%E0%A4%A',
      `sid=${'%'.repeat(100)}`,
      'sid="quoted:but-not-an-id-really"', // unquoted as the cookie package does, and still not an id
      'sid=s:forged.signature',
      `sid=${'x'.repeat(8000)}`,
      ';;;;;=;=;=sid',
      Array.from({ length: 2000 }, (_, i) => `c${i}=v`).join('; '),
      '__proto__=x; constructor=y; toString=z; sid=__proto__',
    ];

    it.each(malformed)('ignores %s without a 5xx or a store call', async (cookie) => {
      const res = await request(app()).get('/read').set('Cookie', cookie.slice(0, 8000));
      expect(res.status).toBe(200);
      expect(res.body.username).toBeNull();
      expect(provider.methods()).toEqual([]);
    });

    it('ignores malformed ids in the header and query transports too', async () => {
      const { app: multi } = buildApp(express, { provider, transports: ['header', 'query'] });
      for (const value of ['', 'short', '../../x', 'a b c d e f g h i j', '%zz'.repeat(10), 'ä'.repeat(20)]) {
        const res = await request(multi)
          .get(`/read?sid=${encodeURIComponent(value)}&sid=second`)
          .set('X-Session-Id', encodeURIComponent(value));
        expect(res.status).toBe(200);
      }
      expect(provider.methods()).toEqual([]);
    });

    it('never lets a forged signature reach the store', async () => {
      const { app: signed } = buildApp(express, { provider, secret: SECRET });
      const res = await request(signed).get('/read').set('Cookie', `sid=s%3A${'A'.repeat(43)}.${'B'.repeat(43)}`);
      expect(res.status).toBe(200);
      expect(provider.methods()).toEqual([]);
    });
  });

  describe('duplicate cookie names', () => {
    it('uses the first one, as browsers send the most specific first', async () => {
      const a = app();
      const first = cookiePair(await request(a).get('/set/who/first'));
      const second = cookiePair(await request(a).get('/set/who/second'));
      const res = await request(a).get('/get/who').set('Cookie', `${first}; ${second}`);
      expect(res.body.value).toBe('first');
    });
  });

  describe('keys and values', () => {
    it('stores __proto__ and constructor as ordinary keys', async () => {
      const a = app();
      const pair = cookiePair(await request(a).get('/set/__proto__/polluted'));
      await request(a).get('/set/constructor/also').set('Cookie', pair);
      expect((await request(a).get('/get/__proto__').set('Cookie', pair)).body.value).toBe('polluted');
      expect((await request(a).get('/get/constructor').set('Cookie', pair)).body.value).toBe('also');
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      const whoami = await request(a).get('/whoami').set('Cookie', pair);
      expect(whoami.body.keys.sort()).toEqual(['__proto__', 'constructor']);
    });

    it('throws a TypeError for values that are not JSON, and keeps what was stored', async () => {
      const a = app();
      const pair = cookiePair(await request(a).get('/set/kept/yes'));
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const bad: Array<[string, unknown]> = [
        ['undefined', undefined],
        ['function', () => 1],
        ['symbol', Symbol('s')],
        ['bigint', BigInt(1)],
        ['NaN', NaN],
        ['Infinity', Infinity],
        ['nested function', { f: () => 1 }],
        ['Map', new Map([[1, 2]])],
        ['circular', circular],
      ];
      a.get('/bad/:which', (req, res) => {
        const [, value] = bad.find(([name]) => name === req.params.which)!;
        try {
          req.session.set('kept', value);
          res.status(500).json({ error: 'accepted' });
        } catch (err) {
          res.status(400).json({ error: (err as Error).name, message: (err as Error).message });
        }
      });
      for (const [name] of bad) {
        const res = await request(a).get(`/bad/${encodeURIComponent(name)}`).set('Cookie', pair);
        expect(res.status).toBe(400);
        expect(res.body.error).toBe('TypeError');
        expect(res.body.message).toMatch(/"kept" is not JSON-serialisable/);
      }
      expect((await request(a).get('/get/kept').set('Cookie', pair)).body.value).toBe('yes');
      expect(await provider.inner.read(storageKey(idOf(pair)))).toBeDefined();
    });
  });

  function app() {
    return buildApp(express, { provider }).app;
  }
});
