import express from 'express';
import request from 'supertest';
import { createManager, hashId, register, sessions, type SessionEvent } from '../lib/index';
import { storageKey } from '../lib/manager';
import { MemoryProvider } from '../lib/providers/memory';
import { buildApp } from './support/app';
import { cookiePair, FakeClock, idOf } from './support/http';
import { RecordingProvider } from './support/recording-provider';

describe('manager', () => {
  let clock: FakeClock;
  beforeEach(() => {
    clock = new FakeClock();
  });

  async function seed(manager: ReturnType<typeof createManager>, n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await manager.create(new Map([['i', String(i)]]))).sid);
    return ids;
  }

  describe('count()', () => {
    it('counts live sessions only, even before GC removes expired ones', async () => {
      const manager = createManager({ clock: clock.now, maxLifetime: 60 });
      await seed(manager, 3);
      clock.advance(30);
      await seed(manager, 2);
      await expect(manager.count()).resolves.toBe(5);
      clock.advance(31);
      await expect(manager.count()).resolves.toBe(2);
      await manager.close();
    });

    it('callers in one turn of the event loop share one store count, and the next turn counts again', async () => {
      const provider = new RecordingProvider();
      const manager = createManager({ provider, clock: clock.now });
      await seed(manager, 2);
      provider.reset();
      await expect(Promise.all(Array.from({ length: 20 }, () => manager.count()))).resolves.toEqual(Array(20).fill(2));
      expect(provider.methods()).toEqual(['count']);
      await seed(manager, 1);
      await expect(manager.count()).resolves.toBe(3);
      expect(provider.methods().filter((method) => method === 'count')).toEqual(['count', 'count']);
      await manager.close();
    });
  });

  describe('sessions()', () => {
    it('lists live sessions with their data and expiry as a Date', async () => {
      const manager = createManager({ clock: clock.now, maxLifetime: 60 });
      const ids = await seed(manager, 2);
      const listed = [];
      for await (const info of manager.sessions()) listed.push(info);
      expect(listed.map((info) => info.handle).sort()).toEqual(ids.map(storageKey).sort());
      expect(JSON.stringify(listed)).not.toContain(ids[0]); // no raw id in a listing
      expect(listed[0].expiresAt).toEqual(new Date(clock.time + 60_000));
      expect(listed.map((info) => info.data.i).sort()).toEqual([0, 1]);
      await manager.close();
    });
  });

  describe('destroy(sid) and gc()', () => {
    it('destroys one session by id', async () => {
      const manager = createManager({ clock: clock.now });
      const [a, b] = await seed(manager, 2);
      await manager.destroy(a);
      expect(await manager.load(a)).toBeUndefined();
      expect(await manager.load(b)).toBeDefined();
      await manager.close();
    });

    it('destroys one session by its handle (from sessions())', async () => {
      const manager = createManager({ clock: clock.now });
      const [a, b] = await seed(manager, 2);
      const listed = [];
      for await (const info of manager.sessions()) listed.push(info);
      await manager.destroy(listed.find((info) => info.data.i === 0)!.handle);
      expect(await manager.load(a)).toBeUndefined();
      expect(await manager.load(b)).toBeDefined();
      await expect(manager.count()).resolves.toBe(1);
      await manager.close();
    });

    it('collects expired sessions', async () => {
      const manager = createManager({ clock: clock.now, maxLifetime: 10 });
      await seed(manager, 4);
      clock.advance(11);
      await expect(manager.gc()).resolves.toBe(4);
      await manager.close();
    });
  });

  describe('the GC loop', () => {
    it('runs on its interval, one run at a time, errors to onError, and stops at close()', async () => {
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask', 'performance'] });
      try {
        const provider = new RecordingProvider();
        const errors: Error[] = [];
        const manager = createManager({ provider, gcInterval: 5, onError: (err) => errors.push(err) });
        await jest.advanceTimersByTimeAsync(4_999);
        expect(provider.methods()).toEqual([]);
        await jest.advanceTimersByTimeAsync(1);
        expect(provider.methods()).toEqual(['gc']);
        provider.failing.add('gc');
        await jest.advanceTimersByTimeAsync(5_000);
        expect(errors.map((err) => err.message)).toEqual([expect.stringMatching(/recording.*gc failed/)]);
        await manager.close();
        await jest.advanceTimersByTimeAsync(60_000);
        expect(provider.methods().filter((method) => method === 'gc')).toHaveLength(2);
        expect(jest.getTimerCount()).toBe(0);
      } finally {
        jest.useRealTimers();
      }
    });

    it('never overlaps a slow run with the next', async () => {
      jest.useFakeTimers({ doNotFake: ['setImmediate', 'nextTick', 'queueMicrotask', 'performance'] });
      try {
        const provider = new RecordingProvider();
        let release!: () => void;
        provider.gates.set('gc', new Promise<void>((resolve) => (release = resolve)));
        const manager = createManager({ provider, gcInterval: 1 });
        await jest.advanceTimersByTimeAsync(10_000); // the first run is stuck
        expect(provider.methods()).toEqual(['gc']);
        release();
        await jest.advanceTimersByTimeAsync(1_000);
        expect(provider.methods()).toEqual(['gc', 'gc']);
        await manager.close();
      } finally {
        jest.useRealTimers();
      }
    });

    it('defaults gcInterval to maxLifetime, capped at 10 minutes', () => {
      expect(createManager({ maxLifetime: 60 }).options.gcIntervalMs).toBe(60_000);
      expect(createManager({ maxLifetime: 86_400 }).options.gcIntervalMs).toBe(600_000);
    });
  });

  describe('close()', () => {
    it('closes the provider once and leaves no timers behind', async () => {
      const provider = new RecordingProvider();
      const manager = createManager({ provider });
      await Promise.all([manager.close(), manager.close()]);
      expect(provider.methods()).toEqual(['close']);
    });
  });

  describe('events', () => {
    it('carry a short hash of the id, never the id itself', async () => {
      const { app: own, middleware } = buildApp(express, { clock: clock.now, maxLifetime: 60 });
      const events: Array<[string, SessionEvent]> = [];
      for (const name of ['created', 'regenerated', 'destroyed', 'expired', 'unknownId'] as const) {
        middleware.manager.on(name, (event: SessionEvent) => events.push([name, event]));
      }
      const first = cookiePair(await request(own).get('/set/a/1'));
      const second = cookiePair(await request(own).post('/login').set('Cookie', first));
      await request(own).post('/logout').set('Cookie', second);
      await request(own).get('/read').set('Cookie', second);
      const third = cookiePair(await request(own).get('/set/a/1'));
      clock.advance(61);
      await request(own).get('/read').set('Cookie', third);

      // regenerate() is one move: a single `regenerated` event for the new id (no created/destroyed pair).
      expect(events.map(([name]) => name)).toEqual(['created', 'regenerated', 'destroyed', 'unknownId', 'created', 'expired']);
      expect(events.map(([, event]) => event.id)).toEqual([idOf(first), idOf(second), idOf(second), idOf(second), idOf(third), idOf(third)].map(hashId));
      // Steps that went to the store say how long it took; a load that found the session expired adds no time.
      expect(events.map(([name, event]) => [name, typeof event.durationMs])).toEqual([
        ['created', 'number'], ['regenerated', 'number'], ['destroyed', 'number'], ['unknownId', 'number'], ['created', 'number'], ['expired', 'undefined'],
      ]);
      expect(hashId(idOf(first))).toBe(storageKey(idOf(first)).slice(0, 12));
      for (const [, event] of events) {
        expect(event.id).toMatch(/^[A-Za-z0-9_-]{12}$/);
        expect(JSON.stringify(event)).not.toContain(idOf(first));
        expect(JSON.stringify(event)).not.toContain(idOf(second));
      }
      await middleware.manager.close();
    });

    it('reports GC expiries and errors as events', async () => {
      const provider = new RecordingProvider();
      const manager = createManager({ provider, clock: clock.now, maxLifetime: 10, onError: () => {} });
      const expired: SessionEvent[] = [];
      const errors: SessionEvent[] = [];
      manager.on('expired', (event) => expired.push(event));
      manager.on('error', (event) => errors.push(event));
      await seed(manager, 2);
      clock.advance(11);
      await manager.gc();
      expect(expired).toHaveLength(2);
      provider.failing.add('touch');
      manager.reportError(new Error('boom'), storageKey('some-session-id-0123456789')); // the manager reports by storage key
      expect(errors).toEqual([{ id: hashId('some-session-id-0123456789'), error: expect.any(Error) }]);
      await manager.close();
    });
  });

  describe('ids', () => {
    it('draws 43-character base64url ids by default', async () => {
      const manager = createManager();
      expect(manager.generateId()).toMatch(/^[A-Za-z0-9_-]{43}$/);
      await manager.close();
    });

    it('rejects a genid that returns a weak or unsafe id', async () => {
      const middleware = sessions({ genid: () => 'abc' });
      const app = express();
      app.use(middleware);
      app.get('/', (req, res) => {
        req.session.set('a', 1);
        res.send('ok');
      });
      const res = await request(app).get('/');
      expect(res.status).toBe(500);
      await middleware.manager.close();
    });

    it('draws another id when genid repeats one that is taken', async () => {
      const ids = ['repeated-id-0000000001', 'repeated-id-0000000001', 'repeated-id-0000000002'];
      const manager = createManager({ genid: () => ids.shift()! });
      await manager.create(new Map());
      await expect(manager.create(new Map())).resolves.toMatchObject({ sid: 'repeated-id-0000000002' });
      await manager.close();
    });
  });
});

describe('the provider registry', () => {
  it('registers a provider by name, as an instance or a factory', async () => {
    const instance = new MemoryProvider();
    register('test-instance', instance);
    register('test-factory', (options) => new MemoryProvider(options));
    expect(createManager({ provider: 'test-instance' }).provider).toBe(instance);
    expect((createManager({ provider: 'test-factory', providerOptions: { maxSessions: 7 } }).provider as MemoryProvider).maxSessions).toBe(7);
  });

  it('throws on a missing provider, a duplicate or a built-in name, and an incomplete provider', () => {
    expect(() => register('nothing', undefined as never)).toThrow(/provider "nothing" is missing/);
    register('taken', new MemoryProvider());
    expect(() => register('taken', new MemoryProvider())).toThrow(/already registered/);
    expect(() => register('redis', new MemoryProvider())).toThrow(/already registered/);
    expect(() => register('half', { read: async () => undefined } as never)).toThrow(/missing create, update, destroy, close$/);
  });

  it('throws on an unknown name with a hint', () => {
    expect(() => sessions({ provider: 'nope' })).toThrow('unknown provider "nope" (forgotten import/register?)');
    expect(() => sessions({ provider: 'toString' })).toThrow(/unknown provider "toString"/);
  });

  it('passes providerOptions to a built-in provider', () => {
    const middleware = sessions({ provider: 'memory', providerOptions: { maxSessions: 3 } });
    expect((middleware.manager.provider as MemoryProvider).maxSessions).toBe(3);
  });

  it('refuses an unknown option of the memory provider, naming it', () => {
    expect(() => sessions({ provider: 'memory', providerOptions: { maxSesions: 3 } as never })).toThrow('[memory] unknown option maxSesions');
  });

  it('reports each eviction at maxSessions as an evicted event with a hashed id', async () => {
    const manager = createManager({ provider: 'memory', providerOptions: { maxSessions: 2 } });
    const evicted: SessionEvent[] = [];
    manager.on('evicted', (event: SessionEvent) => evicted.push(event));
    const records = [];
    for (let i = 0; i < 4; i++) records.push(await manager.create(new Map()));
    expect(evicted.map((event) => event.id)).toEqual([hashId(records[0].sid), hashId(records[1].sid)]);
    await manager.close();
  });
});
