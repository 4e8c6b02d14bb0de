#include "bench/policy_sim/models.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <list>
#include <unordered_map>

#include "policy/frequency_sketch.h"
#include "policy/stream_detector.h"

namespace tierfs::policy::sim {
namespace {

using Key = uint64_t;
using List = std::list<Key>;  // front: most recent

Key KeyOf(OBlock o) { return (uint64_t{o.volume.value()} << 48) ^ o.index; }
OBlock OBlockOf(Key k) {
  return OBlock{VolumeId(static_cast<uint32_t>(k >> 48)),
                k & ((uint64_t{1} << 48) - 1)};
}

// ---------------------------------------------------------------- ARC

class Arc final : public Model {
 public:
  // stream_cutoff > 0: a sequential stream's misses past the cutoff (bytes
  // at 64 KiB blocks) are admitted only when the sketch says the block is
  // used more often than the block its admission would evict.
  explicit Arc(uint64_t c, uint64_t stream_cutoff = 0)
      : c_(c), stream_cutoff_(stream_cutoff), sketch_(c), streams_(64 * 1024) {
    sketch_.set_sample(10 * c);
  }

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    if (stream_cutoff_ != 0) sketch_.Record(oblock);
    const bool stream = streams_.Sequential(oblock, stream_cutoff_);
    auto f = map_.find(k);
    if (f != map_.end() && (f->second.where == kT1 || f->second.where == kT2)) {
      Move(f->second, kT2, k);
      f->second.dirty |= write;
      return true;
    }
    if (stream && f == map_.end() && Resident() >= c_) {
      const Where from = ReplaceFrom(false);
      if (lists_[from].empty() ||
          sketch_.Estimate(oblock) <=
              sketch_.Estimate(OBlockOf(lists_[from].back()))) {
        return false;  // bypass: not cached, no ghost
      }
    }
    Promoted();
    if (f != map_.end()) {  // a ghost
      const bool in_b2 = f->second.where == kB2;
      const double b1 = static_cast<double>(lists_[kB1].size());
      const double b2 = static_cast<double>(lists_[kB2].size());
      if (in_b2) {
        p_ = std::max(0.0, p_ - std::max(1.0, b1 / b2));
      } else {
        p_ = std::min(static_cast<double>(c_), p_ + std::max(1.0, b2 / b1));
      }
      if (Resident() >= c_) Replace(in_b2);
      Move(f->second, kT2, k);
      f->second.dirty = write;
      return false;
    }
    const uint64_t l1 = lists_[kT1].size() + lists_[kB1].size();
    const uint64_t all = l1 + lists_[kT2].size() + lists_[kB2].size();
    if (l1 >= c_) {
      if (lists_[kT1].size() < c_) {
        DropLru(kB1);
        Replace(false);
      } else {
        const Key v = lists_[kT1].back();
        Evicted(map_[v].dirty);
        lists_[kT1].pop_back();
        map_.erase(v);
      }
    } else if (all >= c_) {
      if (all >= 2 * c_) DropLru(kB2);
      if (Resident() >= c_) Replace(false);
    }
    lists_[kT1].push_front(k);
    map_[k] = Node{kT1, write, lists_[kT1].begin()};
    return false;
  }

 private:
  enum Where { kT1, kT2, kB1, kB2 };
  struct Node {
    Where where;
    bool dirty;
    List::iterator it;
  };
  uint64_t Resident() const { return lists_[kT1].size() + lists_[kT2].size(); }
  void Move(Node& n, Where to, Key k) {
    lists_[n.where].erase(n.it);
    lists_[to].push_front(k);
    n.where = to;
    n.it = lists_[to].begin();
  }
  void DropLru(Where w) {
    if (lists_[w].empty()) return;
    map_.erase(lists_[w].back());
    lists_[w].pop_back();
  }
  Where ReplaceFrom(bool in_b2) const {
    const double t1 = static_cast<double>(lists_[kT1].size());
    return !lists_[kT1].empty() && (t1 > p_ || (in_b2 && t1 == std::floor(p_)))
               ? kT1
               : kT2;
  }
  // Evicts the LRU block of T1 or T2 into its ghost list.
  void Replace(bool in_b2) {
    const Where from = ReplaceFrom(in_b2);
    if (lists_[from].empty()) return;
    const Key v = lists_[from].back();
    Node& n = map_[v];
    Evicted(n.dirty);
    n.dirty = false;
    Move(n, from == kT1 ? kB1 : kB2, v);
  }

  const uint64_t c_;
  const uint64_t stream_cutoff_;
  FrequencySketch sketch_;
  StreamDetector streams_;
  double p_ = 0;
  List lists_[4];
  std::unordered_map<Key, Node> map_;
};

// ---------------------------------------------------------------- 2Q

class TwoQ final : public Model {
 public:
  explicit TwoQ(uint64_t c)
      : c_(c),
        kin_(std::max<uint64_t>(1, c / 4)),
        kout_(std::max<uint64_t>(1, c / 2)) {}

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    auto f = map_.find(k);
    if (f != map_.end() && f->second.where != kOut) {
      if (f->second.where == kAm) Move(f->second, kAm, k);
      f->second.dirty |= write;
      return true;
    }
    Promoted();
    const bool was_out = f != map_.end();  // in A1out: it is hot
    if (was_out) {
      lists_[kOut].erase(f->second.it);
      map_.erase(f);  // before Reclaim, which may trim A1out
    }
    if (Resident() >= c_) Reclaim();
    const Where to = was_out ? kAm : kIn;
    lists_[to].push_front(k);
    map_[k] = Node{to, write, lists_[to].begin()};
    return false;
  }

 private:
  enum Where { kIn, kAm, kOut };
  struct Node {
    Where where;
    bool dirty;
    List::iterator it;
  };
  uint64_t Resident() const { return lists_[kIn].size() + lists_[kAm].size(); }
  void Move(Node& n, Where to, Key k) {
    lists_[n.where].erase(n.it);
    lists_[to].push_front(k);
    n.where = to;
    n.it = lists_[to].begin();
  }
  void Reclaim() {
    if (lists_[kIn].size() > kin_ || lists_[kAm].empty()) {
      const Key v = lists_[kIn].back();
      Node& n = map_[v];
      Evicted(n.dirty);
      n.dirty = false;
      Move(n, kOut, v);
      if (lists_[kOut].size() > kout_) {
        map_.erase(lists_[kOut].back());
        lists_[kOut].pop_back();
      }
    } else {
      const Key v = lists_[kAm].back();
      Evicted(map_[v].dirty);
      lists_[kAm].pop_back();
      map_.erase(v);
    }
  }

  const uint64_t c_, kin_, kout_;
  List lists_[3];
  std::unordered_map<Key, Node> map_;
};

// ---------------------------------------------------------------- S3-FIFO

class S3Fifo final : public Model {
 public:
  explicit S3Fifo(uint64_t c)
      : c_(c),
        small_cap_(std::max<uint64_t>(1, c / 10)),
        ghost_cap_(c - std::min(c - 1, small_cap_)) {}

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    auto f = map_.find(k);
    if (f != map_.end()) {
      f->second.freq = std::min(f->second.freq + 1, 3);
      f->second.dirty |= write;
      return true;
    }
    Promoted();
    while (map_.size() >= c_) Evict();
    auto g = ghost_.find(k);
    if (g != ghost_.end()) {
      ghost_.erase(g);
      main_.push_front(k);
      map_[k] = Node{true, 0, write};
    } else {
      small_.push_front(k);
      map_[k] = Node{false, 0, write};
    }
    return false;
  }

 private:
  struct Node {
    bool in_main;
    int freq;
    bool dirty;
  };
  void Evict() {
    if (small_.size() >= small_cap_ || main_.empty()) {
      while (!small_.empty()) {
        const Key t = small_.back();
        small_.pop_back();
        Node& n = map_[t];
        if (n.freq >= 1) {  // accessed again while in S
          n.in_main = true;
          n.freq = 0;
          main_.push_front(t);
          continue;
        }
        Evicted(n.dirty);
        map_.erase(t);
        AddGhost(t);
        return;
      }
    }
    while (!main_.empty()) {
      const Key t = main_.back();
      main_.pop_back();
      Node& n = map_[t];
      if (n.freq > 0) {
        --n.freq;
        main_.push_front(t);
        continue;
      }
      Evicted(n.dirty);
      map_.erase(t);
      return;
    }
  }
  void AddGhost(Key k) {
    ghost_[k] = ++ghost_clock_;
    ghost_fifo_.push_back({k, ghost_clock_});
    while (ghost_.size() > ghost_cap_ && !ghost_fifo_.empty()) {
      auto [key, stamp] = ghost_fifo_.front();
      ghost_fifo_.pop_front();
      auto g = ghost_.find(key);
      if (g != ghost_.end() && g->second == stamp) ghost_.erase(g);
    }
    // Entries removed by a ghost hit leave stale stamps: compact now and
    // then so the FIFO stays bounded.
    if (ghost_fifo_.size() > 4 * ghost_cap_) {
      std::deque<std::pair<Key, uint64_t>> live;
      for (auto& e : ghost_fifo_) {
        auto g = ghost_.find(e.first);
        if (g != ghost_.end() && g->second == e.second) live.push_back(e);
      }
      ghost_fifo_.swap(live);
    }
  }

  const uint64_t c_, small_cap_, ghost_cap_;
  List small_, main_;
  std::unordered_map<Key, Node> map_;
  std::unordered_map<Key, uint64_t> ghost_;
  std::deque<std::pair<Key, uint64_t>> ghost_fifo_;
  uint64_t ghost_clock_ = 0;
};

// ---------------------------------------------------------------- SIEVE

class Sieve final : public Model {
 public:
  explicit Sieve(uint64_t c) : c_(c) {}

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    auto f = map_.find(k);
    if (f != map_.end()) {
      f->second.visited = true;
      f->second.dirty |= write;
      return true;
    }
    Promoted();
    if (map_.size() >= c_) Evict();
    queue_.push_front(k);
    map_[k] = Node{queue_.begin(), false, write};
    return false;
  }

 private:
  struct Node {
    List::iterator it;
    bool visited;
    bool dirty;
  };
  void Evict() {
    // The hand walks from the tail (oldest) toward the head.
    auto o = hand_valid_ ? hand_ : std::prev(queue_.end());
    while (map_[*o].visited) {
      map_[*o].visited = false;
      o = o == queue_.begin() ? std::prev(queue_.end()) : std::prev(o);
    }
    hand_valid_ = o != queue_.begin();
    if (hand_valid_) hand_ = std::prev(o);
    Evicted(map_[*o].dirty);
    map_.erase(*o);
    queue_.erase(o);
  }

  const uint64_t c_;
  List queue_;
  List::iterator hand_;
  bool hand_valid_ = false;
  std::unordered_map<Key, Node> map_;
};

// ---------------------------------------------------------------- W-TinyLFU

class WTinyLfu final : public Model {
 public:
  WTinyLfu(uint64_t c, bool climb, unsigned window_percent = 1,
           bool admit_ties = false)
      : c_(c),
        climb_(climb),
        admit_ties_(admit_ties),
        sketch_(c),
        window_cap_(std::max<uint64_t>(1, c * window_percent / 100)),
        step_(std::max(1.0, 0.0625 * static_cast<double>(c))) {
    sketch_.set_sample(10 * c);
  }

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    sketch_.Record(oblock);
    const bool hit = Lookup(k, write);
    if (climb_) Climb(hit);
    if (hit) return true;
    Promoted();
    lists_[kWindow].push_front(k);
    map_[k] = Node{kWindow, write, lists_[kWindow].begin()};
    while (lists_[kWindow].size() > window_cap_) AdmitFromWindow();
    return false;
  }

 private:
  enum Where { kWindow, kProbation, kProtected };
  struct Node {
    Where where;
    bool dirty;
    List::iterator it;
  };

  bool Lookup(Key k, bool write) {
    auto f = map_.find(k);
    if (f == map_.end()) return false;
    Node& n = f->second;
    n.dirty |= write;
    if (n.where == kWindow) {
      Move(n, kWindow, k);
    } else {
      Move(n, kProtected, k);
      while (lists_[kProtected].size() > ProtectedCap()) {
        const Key v = lists_[kProtected].back();
        Move(map_[v], kProbation, v);
      }
    }
    return true;
  }
  uint64_t MainCap() const { return c_ - window_cap_; }
  uint64_t ProtectedCap() const { return MainCap() * 8 / 10; }
  uint64_t MainSize() const {
    return lists_[kProbation].size() + lists_[kProtected].size();
  }
  void Move(Node& n, Where to, Key k) {
    lists_[n.where].erase(n.it);
    lists_[to].push_front(k);
    n.where = to;
    n.it = lists_[to].begin();
  }
  void Drop(Key k) {
    auto f = map_.find(k);
    Evicted(f->second.dirty);
    lists_[f->second.where].erase(f->second.it);
    map_.erase(f);
  }
  // The window's LRU block goes to probation if main has room, else it
  // must be more frequent than main's victim to get in (TinyLFU).
  void AdmitFromWindow() {
    const Key cand = lists_[kWindow].back();
    if (MainSize() < MainCap()) {
      Move(map_[cand], kProbation, cand);
      return;
    }
    const Where from = lists_[kProbation].empty() ? kProtected : kProbation;
    const Key victim = lists_[from].back();
    const unsigned fc = sketch_.Estimate(OBlockOf(cand));
    const unsigned fv = sketch_.Estimate(OBlockOf(victim));
    if (fc > fv || (admit_ties_ && fc == fv)) {
      Drop(victim);
      Move(map_[cand], kProbation, cand);
    } else {
      Drop(cand);
    }
  }
  // Caffeine's hill climber: every sample, step the window size the way
  // that raised the hit ratio, reversing when it fell.
  void Climb(bool hit) {
    hits_ += hit;
    if (++samples_ < 10 * c_) return;
    const double rate = static_cast<double>(hits_) / samples_;
    hits_ = samples_ = 0;
    if (rate < previous_rate_) direction_ = -direction_;
    if (std::abs(rate - previous_rate_) >= 0.05) {
      step_ = std::max(1.0, 0.0625 * static_cast<double>(c_));  // restart
    } else {
      step_ = std::max(1.0, step_ * 0.98);
    }
    previous_rate_ = rate;
    const double target = static_cast<double>(window_cap_) + direction_ * step_;
    window_cap_ = static_cast<uint64_t>(
        std::clamp(target, 1.0, 0.8 * static_cast<double>(c_)));
    // Grow: main's oldest blocks join the window; shrink: the window's
    // oldest join probation.
    while (lists_[kWindow].size() < window_cap_ && MainSize() > MainCap()) {
      const Where from = lists_[kProbation].empty() ? kProtected : kProbation;
      const Key v = lists_[from].back();
      Node& n = map_[v];
      lists_[from].erase(n.it);
      lists_[kWindow].push_back(v);
      n.where = kWindow;
      n.it = std::prev(lists_[kWindow].end());
    }
    while (lists_[kWindow].size() > window_cap_) {
      const Key v = lists_[kWindow].back();
      Move(map_[v], kProbation, v);
    }
  }

  const uint64_t c_;
  const bool climb_;
  const bool admit_ties_;
  FrequencySketch sketch_;
  uint64_t window_cap_;
  double step_;
  int direction_ = 1;
  double previous_rate_ = 0;
  uint64_t hits_ = 0, samples_ = 0;
  List lists_[3];
  std::unordered_map<Key, Node> map_;
};

// ---------------------------------------------------------------- AW-TinyLFU
// W-TinyLFU whose window size adapts as ARC's T1 target does: a window
// block refused by the admission filter leaves a ghost in GW, a block
// evicted from main one in GM. A miss that hits a GW ghost says the
// window was too small (a recency reuse was lost): the window grows; a GM
// ghost hit says main was too small: the window shrinks.

class AdaptiveTinyLfu final : public Model {
 public:
  AdaptiveTinyLfu(uint64_t c, bool symmetric, uint64_t ghost_each = 0)
      : c_(c),
        symmetric_(symmetric),
        ghost_each_(ghost_each),
        sketch_(c),
        window_target_(std::max<uint64_t>(1, c / 100)) {
    sketch_.set_sample(10 * c);
  }

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    sketch_.Record(oblock);
    auto f = map_.find(k);
    if (f != map_.end() && f->second.where <= kProtected) {
      Node& n = f->second;
      n.dirty |= write;
      if (n.where == kWindow) {
        Move(n, kWindow, k);
      } else {
        Move(n, kProtected, k);
        while (lists_[kProtected].size() > (c_ - window_target_) * 8 / 10) {
          const Key v = lists_[kProtected].back();
          Move(map_[v], kProbation, v);
        }
      }
      return true;
    }
    Promoted();
    if (f != map_.end()) {
      const double gw = static_cast<double>(lists_[kGhostWindow].size());
      const double gm = static_cast<double>(lists_[kGhostMain].size());
      double w = static_cast<double>(window_target_);
      if (symmetric_) {
        w += f->second.where == kGhostWindow ? 1.0 : -1.0;
      } else if (f->second.where == kGhostWindow) {
        w += std::max(1.0, gm / gw);
      } else {
        w -= std::max(1.0, gw / gm);
      }
      window_target_ = static_cast<uint64_t>(
          std::clamp(w, 1.0, static_cast<double>(c_ - 1)));
      lists_[f->second.where].erase(f->second.it);
      map_.erase(f);
    }
    if (Resident() >= c_ && lists_[kWindow].size() < window_target_) {
      EvictMain();  // the window grows
    }
    lists_[kWindow].push_front(k);
    map_[k] = Node{kWindow, write, lists_[kWindow].begin()};
    while (lists_[kWindow].size() > window_target_ || Resident() > c_) {
      AdmitFromWindow();
    }
    return false;
  }

 private:
  enum Where { kWindow, kProbation, kProtected, kGhostWindow, kGhostMain };
  struct Node {
    Where where;
    bool dirty;
    List::iterator it;
  };
  uint64_t MainSize() const {
    return lists_[kProbation].size() + lists_[kProtected].size();
  }
  uint64_t Resident() const { return lists_[kWindow].size() + MainSize(); }
  void Move(Node& n, Where to, Key k) {
    lists_[n.where].erase(n.it);
    lists_[to].push_front(k);
    n.where = to;
    n.it = lists_[to].begin();
  }
  void ToGhost(Key k, Where ghost) {
    Node& n = map_[k];
    Evicted(n.dirty);
    n.dirty = false;
    Move(n, ghost, k);
    if (ghost_each_ != 0) {  // each ghost list bounded alike
      while (lists_[ghost].size() > ghost_each_) DropOldest(ghost);
      return;
    }
    // ARC's bounds: window + its ghosts <= c, all ghosts <= c.
    while (lists_[kGhostWindow].size() + lists_[kWindow].size() > c_ &&
           !lists_[kGhostWindow].empty()) {
      DropOldest(kGhostWindow);
    }
    while (lists_[kGhostWindow].size() + lists_[kGhostMain].size() > c_) {
      DropOldest(lists_[kGhostMain].empty() ? kGhostWindow : kGhostMain);
    }
  }
  void DropOldest(Where w) {
    map_.erase(lists_[w].back());
    lists_[w].pop_back();
  }
  Key MainVictim() const {
    return lists_[kProbation].empty() ? lists_[kProtected].back()
                                      : lists_[kProbation].back();
  }
  void EvictMain() {
    if (MainSize() == 0) return;
    ToGhost(MainVictim(), kGhostMain);
  }
  void AdmitFromWindow() {
    const Key cand = lists_[kWindow].back();
    if (Resident() <= c_) {
      Move(map_[cand], kProbation, cand);
      return;
    }
    if (MainSize() == 0) {
      ToGhost(cand, kGhostWindow);
      return;
    }
    const Key victim = MainVictim();
    if (sketch_.Estimate(OBlockOf(cand)) > sketch_.Estimate(OBlockOf(victim))) {
      ToGhost(victim, kGhostMain);
      Move(map_[cand], kProbation, cand);
    } else {
      ToGhost(cand, kGhostWindow);
    }
  }

  const uint64_t c_;
  const bool symmetric_;
  const uint64_t ghost_each_;
  FrequencySketch sketch_;
  uint64_t window_target_;
  List lists_[5];
  std::unordered_map<Key, Node> map_;
};

// ---------------------------------------------------------------- LIRS

class Lirs final : public Model {
 public:
  explicit Lirs(uint64_t c)
      : c_(c),
        hir_cap_(std::max<uint64_t>(1, c / 100)),
        lir_cap_(c > hir_cap_ ? c - hir_cap_ : 1) {}

  bool Access(OBlock oblock, bool write) override {
    const Key k = KeyOf(oblock);
    auto f = map_.find(k);
    if (f != map_.end() && f->second.state != kNonResident) {
      Node& n = f->second;
      n.dirty |= write;
      if (n.state == kLir) {
        ToStackTop(n, k);
        Prune();
      } else if (n.in_stack) {  // a resident HIR with a short reuse
        ToStackTop(n, k);
        queue_.erase(n.qit);
        n.in_queue = false;
        n.state = kLir;
        ++lirs_;
        DemoteBottomLir();
        Prune();
      } else {
        ToStackTop(n, k);
        queue_.erase(n.qit);
        queue_.push_front(k);
        n.qit = queue_.begin();
      }
      return true;
    }
    Promoted();
    if (lirs_ < lir_cap_ && Resident() < c_) {
      Node& n = map_[k];
      n.state = kLir;
      n.dirty = write;
      ++lirs_;
      ToStackTop(n, k);
      return false;
    }
    if (Resident() >= c_) EvictHir();
    f = map_.find(k);
    Node& n = map_[k];
    n.dirty = write;
    if (f != map_.end() && n.in_stack) {  // non-resident HIR in the stack
      --nonresident_;
      n.state = kLir;
      ++lirs_;
      ToStackTop(n, k);
      DemoteBottomLir();
      Prune();
    } else {
      n.state = kHir;
      ToStackTop(n, k);
      queue_.push_front(k);
      n.qit = queue_.begin();
      n.in_queue = true;
    }
    BoundStack();
    return false;
  }

 private:
  enum State { kLir, kHir, kNonResident };
  struct Node {
    State state = kHir;
    bool dirty = false;
    bool in_stack = false, in_queue = false;
    List::iterator sit, qit;
  };
  uint64_t Resident() const { return lirs_ + queue_.size(); }
  void ToStackTop(Node& n, Key k) {
    if (n.in_stack) stack_.erase(n.sit);
    stack_.push_front(k);
    n.sit = stack_.begin();
    n.in_stack = true;
  }
  // The stack's bottom LIR block becomes a resident HIR block.
  void DemoteBottomLir() {
    const Key b = stack_.back();
    Node& n = map_[b];
    stack_.pop_back();
    n.in_stack = false;
    n.state = kHir;
    --lirs_;
    queue_.push_front(b);
    n.qit = queue_.begin();
    n.in_queue = true;
  }
  // Removes HIR entries from the stack bottom until a LIR block is there.
  void Prune() {
    while (!stack_.empty()) {
      const Key b = stack_.back();
      Node& n = map_[b];
      if (n.state == kLir) return;
      stack_.pop_back();
      n.in_stack = false;
      if (n.state == kNonResident) {
        --nonresident_;
        map_.erase(b);
      }
    }
  }
  void EvictHir() {
    const Key v = queue_.back();
    queue_.pop_back();
    Node& n = map_[v];
    Evicted(n.dirty);
    n.dirty = false;
    n.in_queue = false;
    if (n.in_stack) {
      n.state = kNonResident;
      ++nonresident_;
    } else {
      map_.erase(v);
    }
  }
  // Non-resident entries beyond 2x the cache go, oldest first.
  void BoundStack() {
    if (nonresident_ <= 2 * c_) return;
    for (auto it = std::prev(stack_.end()); nonresident_ > c_;) {
      Node& n = map_[*it];
      auto up = it == stack_.begin() ? stack_.end() : std::prev(it);
      if (n.state == kNonResident) {
        --nonresident_;
        map_.erase(*it);
        stack_.erase(it);
      }
      if (up == stack_.end()) break;
      it = up;
    }
  }

  const uint64_t c_, hir_cap_, lir_cap_;
  uint64_t lirs_ = 0, nonresident_ = 0;
  List stack_, queue_;  // queue_: resident HIR blocks, front newest
  std::unordered_map<Key, Node> map_;
};

}  // namespace

std::vector<std::string> ModelNames() {
  return {"arc",
          "2q",
          "s3fifo",
          "sieve",
          "wtinylfu",
          "wtinylfu-hc",
          "awtinylfu",
          "awtinylfu-sym",
          "awtinylfu-sym-g25",
          "lirs"};
}

std::unique_ptr<Model> NewModel(std::string_view name, uint64_t cache_blocks) {
  const uint64_t c = std::max<uint64_t>(cache_blocks, 2);
  if (name == "arc") return std::make_unique<Arc>(c);
  if (name == "arc-streams") return std::make_unique<Arc>(c, 4 << 20);
  if (name == "2q") return std::make_unique<TwoQ>(c);
  if (name == "s3fifo") return std::make_unique<S3Fifo>(c);
  if (name == "sieve") return std::make_unique<Sieve>(c);
  if (name == "wtinylfu") return std::make_unique<WTinyLfu>(c, false);
  if (name == "wtinylfu-hc") return std::make_unique<WTinyLfu>(c, true);
  if (name == "lirs") return std::make_unique<Lirs>(c);
  if (name == "awtinylfu") return std::make_unique<AdaptiveTinyLfu>(c, false);
  if (name == "awtinylfu-sym") {
    return std::make_unique<AdaptiveTinyLfu>(c, true);
  }
  unsigned each = 0;
  if (std::sscanf(std::string(name).c_str(), "awtinylfu-sym-g%u", &each) == 1 &&
      each >= 1 && each <= 100) {
    return std::make_unique<AdaptiveTinyLfu>(c, true, c * each / 100);
  }
  if (std::sscanf(std::string(name).c_str(), "awtinylfu-g%u", &each) == 1 &&
      each >= 1 && each <= 100) {
    return std::make_unique<AdaptiveTinyLfu>(c, false, c * each / 100);
  }
  // Exploration variants: wtinylfu-wN (window N% of the cache), -tie
  // (a candidate as frequent as the victim gets in).
  unsigned window = 0;
  if (name.starts_with("wtinylfu-w") &&
      std::sscanf(std::string(name).c_str(), "wtinylfu-w%u", &window) == 1 &&
      window >= 1 && window <= 90) {
    return std::make_unique<WTinyLfu>(c, false, window, name.ends_with("-tie"));
  }
  return nullptr;
}

}  // namespace tierfs::policy::sim
