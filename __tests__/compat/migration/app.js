// An Express + Passport + connect-flash app as it is written for
// express-session: plain JavaScript, req.session used as a plain object.
// The migration test builds it twice: with
//   app.use(session({ secret, resave: false, saveUninitialized: false }))
// and with that one line replaced by
//   app.use(sessions({ compat: 'express-session', secret }))
'use strict';
const { Passport } = require('passport');
const { Strategy: LocalStrategy } = require('passport-local');
const flash = require('connect-flash');

const USERS = [
  { id: 1, username: 'ann', password: 'secret-ann', name: 'Ann' },
  { id: 2, username: 'bob', password: 'secret-bob', name: 'Bob' },
];

/** @param express the Express module (4 or 5); @param sessionMiddleware the one line that changes */
function createApp(express, sessionMiddleware) {
  const passport = new Passport();
  passport.use(
    new LocalStrategy((username, password, done) => {
      const user = USERS.find((each) => each.username === username && each.password === password);
      return user ? done(null, user) : done(null, false, { message: 'Invalid username or password.' });
    }),
  );
  passport.serializeUser((user, done) => done(null, user.id));
  passport.deserializeUser((id, done) => done(null, USERS.find((each) => each.id === id) || false));

  const app = express();
  app.use(express.urlencoded({ extended: false }));
  app.use(sessionMiddleware);
  app.use(flash());
  app.use(passport.authenticate('session'));

  const ensureLoggedIn = (req, res, next) => (req.isAuthenticated() ? next() : res.redirect('/login'));

  app.get('/', (req, res) => {
    req.session.views = (req.session.views || 0) + 1;
    res.json({ views: req.session.views, user: req.user ? req.user.username : null });
  });
  app.get('/login', (req, res) => {
    const messages = req.session.messages || [];
    req.session.messages = [];
    res.json({ messages, errors: req.flash('error') });
  });
  app.post(
    '/login/password',
    passport.authenticate('local', { successRedirect: '/profile', failureRedirect: '/login', failureMessage: true }),
  );
  app.post('/login/flash', passport.authenticate('local', { successRedirect: '/profile', failureRedirect: '/login', failureFlash: true }));
  // Keeps what the visitor did before logging in (the cart).
  app.post('/login/keep', passport.authenticate('local', { successRedirect: '/cart', failureRedirect: '/login', keepSessionInfo: true }));
  app.post('/cart', (req, res) => {
    req.session.cart = req.session.cart || [];
    req.session.cart.push(req.body.item);
    res.redirect('/cart');
  });
  app.get('/cart', (req, res) => res.json({ cart: req.session.cart || null, user: req.user ? req.user.username : null }));
  app.get('/profile', ensureLoggedIn, (req, res) => {
    req.session.pages = req.session.pages || {};
    req.session.pages.profile = (req.session.pages.profile || 0) + 1;
    res.json({ name: req.user.name, profileViews: req.session.pages.profile, passport: req.session.passport });
  });
  app.post('/preferences', ensureLoggedIn, (req, res) => {
    req.session.preferences = { theme: req.body.theme };
    req.flash('info', 'Saved.');
    res.redirect('/preferences');
  });
  app.get('/preferences', ensureLoggedIn, (req, res) => res.json({ preferences: req.session.preferences || null, info: req.flash('info') }));
  app.post('/logout', (req, res, next) => {
    req.logout((err) => (err ? next(err) : res.redirect('/')));
  });
  return app;
}

module.exports = { createApp, USERS };
