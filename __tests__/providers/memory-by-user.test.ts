import { MemoryProvider } from '../../lib/providers/memory';
import { UserIndex } from '../../lib/providers/memory-users';
import { USER_KEY } from '../../lib/providers/provider';
import { ShardedMap } from '../../lib/providers/sharded-map';

const MINUTE = 60_000;
const bound = (user: string, extra: Record<string, unknown> = {}): Map<string, string> =>
  new Map([...Object.entries(extra).map(([key, value]): [string, string] => [key, JSON.stringify(value)]), [USER_KEY, JSON.stringify(user)]]);
const plain = (n: number): Map<string, string> => new Map([['n', String(n)]]);

describe('memory provider: sessions by user', () => {
  const now = Date.now();
  let provider: MemoryProvider;
  const listed = async (user: string, at = now): Promise<string[]> => (await provider.listByUser(user, at)).map((entry) => entry.sid).sort();

  /** What the index was told to forget, so a test can tell unindexing from listByUser's own pruning. */
  let forgotten: string[];
  let forget: jest.SpyInstance;

  beforeEach(() => {
    provider = new MemoryProvider();
    forgotten = [];
    const original = UserIndex.prototype.delete;
    forget = jest.spyOn(UserIndex.prototype, 'delete').mockImplementation(function (this: UserIndex, user, sid) {
      forgotten.push(`${user}:${sid}`);
      original.call(this, user, sid);
    });
  });
  afterEach(async () => {
    forget.mockRestore();
    await provider.close();
  });

  it('answers from the index, never walking all sessions', async () => {
    for (let i = 0; i < 1000; i++) await provider.create(`s${i}`, i % 100 === 0 ? bound('ann') : bound(`u${i}`), now, now + MINUTE);
    const walk = jest.spyOn(ShardedMap.prototype, 'keys');
    try {
      expect(await listed('ann')).toEqual(['s0', 's100', 's200', 's300', 's400', 's500', 's600', 's700', 's800', 's900']);
      expect(walk).not.toHaveBeenCalled();
    } finally {
      walk.mockRestore();
    }
  });

  it('forgets sessions evicted at maxSessions', async () => {
    provider = new MemoryProvider({ maxSessions: 2 });
    await provider.create('a', bound('ann'), now, now + MINUTE);
    await provider.create('b', bound('ann'), now, now + MINUTE);
    await provider.create('c', plain(1), now, now + MINUTE); // evicts a, the oldest probationary session
    expect(forgotten).toEqual(['ann:a']);
    expect(await listed('ann')).toEqual(['b']);
    await provider.update('b', plain(2), now + MINUTE, now); // established
    await provider.create('d', plain(1), now, now + MINUTE); // evicts c
    await provider.create('e', plain(1), now, now + MINUTE); // evicts d
    expect(await listed('ann')).toEqual(['b']);
    await provider.touch('e', now + 2 * MINUTE, now);
    await provider.create('f', plain(1), now, now + MINUTE); // no newcomer left: evicts b, expiring soonest
    expect(forgotten).toEqual(['ann:a', 'ann:b']);
    expect(await listed('ann')).toEqual([]);
  });

  it('forgets sessions the sweep collects, probationary or established', async () => {
    await provider.create('new', bound('ann'), now, now + MINUTE);
    await provider.create('used', bound('ann'), now, now + MINUTE);
    await provider.touch('used', now + MINUTE, now);
    await provider.create('later', bound('ann'), now, now + 10 * MINUTE);
    const gone: string[] = [];
    await expect(provider.gc(now + 2 * MINUTE, (sid) => gone.push(sid))).resolves.toBe(2);
    expect(gone.sort()).toEqual(['new', 'used']);
    expect(forgotten.sort()).toEqual(['ann:new', 'ann:used']);
    expect(await listed('ann', now)).toEqual(['later']);
    // A new session under a collected id is not listed under the old user.
    await provider.create('new', bound('bob'), now, now + MINUTE);
    expect([await listed('ann'), await listed('bob')]).toEqual([['later'], ['new']]);
  });

  it('moves the user with the session, and applies a user change made by the move', async () => {
    await provider.create('a', bound('ann', { n: 1 }), now, now + MINUTE);
    await provider.move('a', 'b', new Map([['n', '2']]), now, now + MINUTE, now);
    expect(await listed('ann')).toEqual(['b']);
    await provider.move('b', 'c', new Map([[USER_KEY, JSON.stringify('bob')]]), now, now + MINUTE, now);
    expect([await listed('ann'), await listed('bob')]).toEqual([[], ['c']]);
    await provider.move('c', 'd', new Map([[USER_KEY, undefined]]), now, now + MINUTE, now);
    expect(await listed('bob')).toEqual([]);
    await provider.create('e', plain(1), now, now + MINUTE);
    await provider.move('e', 'f', new Map([[USER_KEY, JSON.stringify('cy')]]), now, now + MINUTE, now);
    expect(await listed('cy')).toEqual(['f']);
  });

  it('keeps the index when a create or move is refused', async () => {
    await provider.create('a', bound('ann'), now, now + MINUTE);
    await provider.create('b', bound('bob'), now, now + MINUTE);
    await expect(provider.create('a', bound('bob'), now, now + MINUTE)).resolves.toBe(false);
    await expect(provider.move('a', 'b', new Map(), now, now + MINUTE, now)).resolves.toBe(false);
    expect([await listed('ann'), await listed('bob')]).toEqual([['a'], ['b']]);
  });

  it('does not index a user key that is not the JSON of a string', async () => {
    await provider.create('a', new Map([[USER_KEY, '42']]), now, now + MINUTE);
    await provider.create('b', new Map([[USER_KEY, '{"not":"json"']]), now, now + MINUTE);
    expect(await listed('42')).toEqual([]);
    await provider.update('a', new Map([[USER_KEY, '"\\u0061nn"']]), now + MINUTE, now); // JSON text of "ann", spelt otherwise
    expect(await listed('ann')).toEqual(['a']);
    await provider.destroy('a');
    await provider.destroy('b');
    expect(forgotten).toEqual(['ann:a']);
    expect(await listed('ann')).toEqual([]);
  });

  it('does not mistake an app value that mentions the user key for a binding', async () => {
    const tricky = new Map([['note', JSON.stringify(`{"${USER_KEY}":"\\"ann\\""}`)], [`x"${USER_KEY}`, '"ann"']]);
    await provider.create('t', tricky, now, now + MINUTE);
    expect(await listed('ann')).toEqual([]);
    await provider.destroy('t');
  });
});

describe('UserIndex', () => {
  it('holds one id as a string, several as a set, and forgets a user with none', () => {
    const index = new UserIndex();
    index.add('ann', 'a');
    index.add('ann', 'a');
    expect([index.sids('ann'), index.size]).toEqual([['a'], 1]);
    index.add('ann', 'b');
    index.add('ann', 'c');
    expect([index.sids('ann').sort(), index.size]).toEqual([['a', 'b', 'c'], 3]);
    index.delete('ann', 'b');
    index.delete('ann', 'zz');
    index.delete('bob', 'a');
    expect([index.sids('ann').sort(), index.size]).toEqual([['a', 'c'], 2]);
    index.delete('ann', 'a');
    index.delete('ann', 'c');
    expect([index.sids('ann'), index.size]).toEqual([[], 0]);
  });
});
