#include "pool.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rq {

namespace {

struct Job {
  const std::function<void(int64_t, int)>* fn;
  int64_t tasks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> slots{1};  // slot 0 is the caller's
  std::mutex mutex;
  std::condition_variable finished;
  std::exception_ptr error;

  // Takes tasks until none is left; returns after finishing the last one it took.
  void work(int slot) {
    for (int64_t t = next.fetch_add(1); t < tasks; t = next.fetch_add(1)) {
      try {
        (*fn)(t, slot);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == tasks) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }
};

int configured_threads() {
  if (const char* env = std::getenv("ROTAQUANT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

class Pool {
 public:
  explicit Pool(int size) : size_(size) {
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return size_; }

  void run(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
    if (tasks <= 0) return;
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->tasks = tasks;
    if (size_ > 1 && tasks > 1) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        jobs_.push_back(job);
      }
      wake_.notify_all();
    }
    job->work(0);
    {
      std::unique_lock<std::mutex> lock(job->mutex);
      job->finished.wait(lock, [&] { return job->done.load() == tasks; });
    }
    forget(job);
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void forget(const std::shared_ptr<Job>& job) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (*it == job) {
        jobs_.erase(it);
        break;
      }
    }
  }

  void loop() {
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (stopping_) return;
        job = jobs_.front();
        if (job->next.load() >= job->tasks) {  // all taken: let it go, look again
          jobs_.pop_front();
          continue;
        }
        // rotate so that concurrent jobs share the workers
        jobs_.pop_front();
        jobs_.push_back(job);
      }
      const int slot = job->slots.fetch_add(1);
      if (slot < size_) job->work(slot);
    }
  }

  const int size_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> jobs_;
  bool stopping_ = false;
};

Pool& pool() {
  static Pool* instance = new Pool(configured_threads());  // never destroyed: workers may
  return *instance;                                         // outlive static destruction
}

}  // namespace

int pool_size() { return pool().size(); }

void parallel_for(int64_t tasks, const std::function<void(int64_t, int)>& fn) {
  pool().run(tasks, fn);
}

}  // namespace rq
