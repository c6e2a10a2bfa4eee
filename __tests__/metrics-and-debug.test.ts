// The README's metrics recipe (prom-client) works on real events, and
// NODE_DEBUG=session-manager logs decisions with hashed ids only.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import express from 'express';
import { Registry } from 'prom-client';
import request from 'supertest';
import { sessions } from '../lib/index';
import { cookiePair, idOf } from './support/http';
import { instrument } from './recipes/metrics';

describe('metrics recipe', () => {
  it('counts lifecycle events and observes store latency per operation', async () => {
    const app = express();
    const middleware = sessions({ onError: () => undefined, touchAfter: 0 });
    const registry = new Registry();
    instrument(middleware.manager, registry);
    app.use(middleware);
    app.get('/set', (req, res) => {
      req.session.set('n', 1);
      res.end('ok');
    });
    app.get('/read', (req, res) => res.end(String(req.session.get('n'))));
    app.post('/login', async (req, res) => {
      await req.session.regenerate();
      res.end('ok');
    });
    try {
      const cookie = cookiePair(await request(app).get('/set'));
      await request(app).get('/read').set('Cookie', cookie);
      await request(app).post('/login').set('Cookie', cookie);
      await request(app).get('/read').set('Cookie', cookie); // the old id: unknown now
      const metrics = await registry.getMetricsAsJSON();
      const value = (name: string): number => metrics.find((metric) => metric.name === name)!.values[0]?.value ?? 0;
      expect(value('sessions_created_total')).toBe(1);
      expect(value('sessions_regenerated_total')).toBe(1);
      expect(value('sessions_unknownId_total')).toBe(1);
      const latency = metrics.find((metric) => metric.name === 'session_store_seconds')!;
      const counts = latency.values.filter((each) => (each as { metricName?: string }).metricName === 'session_store_seconds_count');
      const operations = Object.fromEntries(counts.map((each) => [each.labels.operation, each.value]));
      // Reads: /read and /login load the session; the unknown id costs two (its session, then a renewal link).
      expect(operations).toMatchObject({ create: 1, read: 4, touch: 1, regenerate: 1 });
    } finally {
      await middleware.manager.close();
    }
  });
});

describe('NODE_DEBUG=session-manager', () => {
  it('logs what the library decides per request, with hashed ids only', () => {
    const script = `
      const express = require('express');
      const request = require('supertest');
      const { sessions } = require('./lib/index');
      const app = express();
      const mw = sessions();
      app.use(mw);
      app.get('/set', (req, res) => { req.session.set('n', 1); res.end(req.sessionID); });
      app.get('/out', async (req, res) => { await req.session.destroy(); res.end('bye'); });
      (async () => {
        const first = await request(app).get('/set');
        const cookie = first.headers['set-cookie'][0].split(';')[0];
        await request(app).get('/set').set('Cookie', cookie);
        await request(app).get('/out').set('Cookie', cookie);
        await request(app).get('/set').set('Cookie', cookie);
        process.stdout.write(cookie);
        await mw.manager.close();
      })();`;
    const run = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', script], {
      cwd: join(__dirname, '..'),
      env: { ...process.env, NODE_DEBUG: 'session-manager' },
      encoding: 'utf8',
    });
    expect(run.status).toBe(0);
    const id = idOf(run.stdout);
    const lines = run.stderr.split('\n').filter((line) => line.startsWith('SESSION-MANAGER'));
    expect(lines.map((line) => line.replace(/^SESSION-MANAGER \d+: /, '').split(' ')[0])).toEqual(['created', 'loaded', 'saved', 'loaded', 'destroyed', 'unknown', 'created']);
    expect(run.stderr).not.toContain(id);
  });
});
