#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e6+t.tv_nsec/1e3;}
static void *th(void *a){ void *h=dlopen((char*)a,RTLD_NOW|RTLD_LOCAL); return h; }
int main(int argc,char**argv){
  const char *swiftlibs[]={"/opt/swift/usr/lib/swift/linux/libswiftCore.so","/opt/swift/usr/lib/swift/linux/libswift_Concurrency.so","/opt/swift/usr/lib/swift/linux/libdispatch.so",NULL};
  if(argc>1) for(int i=0;swiftlibs[i];i++) if(!dlopen(swiftlibs[i],RTLD_NOW|RTLD_GLOBAL)) printf("%s\n",dlerror());
  char path[64]; int n=16;
  double t=now();
  for(int i=0;i<n;i++){int fd[2];pipe(fd);pid_t p=fork(); if(!p){snprintf(path,64,"/tmp/fk/lib%d.so",i); void*h=dlopen(path,RTLD_NOW); char c=h?1:0; write(fd[1],&c,1); _exit(0);} char c; read(fd[0],&c,1); close(fd[0]);close(fd[1]); }
  double f=(now()-t)/n;
  while(wait(NULL)>0);
  t=now(); pthread_t ts[16];
  for(int i=0;i<n;i++){char*p=malloc(64);snprintf(p,64,"/tmp/fk/lib%d.so",i);pthread_create(&ts[i],0,th,p);} for(int i=0;i<n;i++)pthread_join(ts[i],0);
  double th_=(now()-t)/n;
  printf("fork+dlopen+handshake %.0f us, thread+dlopen %.0f us, ratio %.1f\n",f,th_,f/th_);
}
