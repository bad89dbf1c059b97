// Make opencv.js run under a Content-Security-Policy without 'unsafe-eval'.
//
// The opencv.js of @techstark/opencv-js (Emscripten 2.0 embind) builds four kinds of small
// JavaScript functions from strings with `new Function` at start-up, which a strict CSP
// forbids. Each is replaced by the closure Emscripten itself uses when built with
// DYNAMIC_EXECUTION=0: same arguments, same calls, same results, no code from strings.
// Nothing else in the file changes; the result is checked against web/vendor.sha256.
//
// Usage: node web/patch-opencv.mjs IN.js OUT.js
import {readFileSync, writeFileSync} from "node:fs";

const REPLACEMENTS = [
  {
    name: "createNamedFunction",
    start: "function createNamedFunction(name,body){",
    end: "(body)}",
    code: 'function createNamedFunction(name,body){name=makeLegalFunctionName(name);' +
      'var f=function(){"use strict";return body.apply(this,arguments)};' +
      'try{Object.defineProperty(f,"name",{value:name})}catch(e){}return f}',
  },
  {
    name: "makeDynCaller",
    start: "function makeDynCaller(dynCall){",
    end: "(dynCall,rawFunction)}",
    code: "function makeDynCaller(dynCall){return function(){var a=[rawFunction];" +
      "for(var i=0;i<arguments.length;++i){a.push(arguments[i])}" +
      "return dynCall.apply(null,a)}}",
  },
  {
    name: "craftInvokerFunction",
    start: "function craftInvokerFunction(humanName,argTypes,classType,cppInvokerFunc,cppTargetFunc){",
    end: "return invokerFunction}",
    code: "function craftInvokerFunction(humanName,argTypes,classType,cppInvokerFunc,cppTargetFunc){" +
      "var argCount=argTypes.length;if(argCount<2){throwBindingError(\"argTypes array size " +
      "mismatch! Must at least get return value and 'this' types!\")}" +
      "var isClassMethodFunc=argTypes[1]!==null&&classType!==null;" +
      "var needsDestructorStack=false;for(var i=1;i<argTypes.length;++i){" +
      "if(argTypes[i]!==null&&argTypes[i].destructorFunction===undefined){" +
      "needsDestructorStack=true;break}}" +
      "var returns=argTypes[0].name!==\"void\";var expected=argCount-2;" +
      "return function(){if(arguments.length!==expected){throwBindingError(\"function \"+" +
      "humanName+\" called with \"+arguments.length+\" arguments, expected \"+expected+" +
      "\" args!\")}var destructors=needsDestructorStack?[]:null;var thisWired;" +
      "var wired=new Array(expected);var call=[cppTargetFunc];" +
      "if(isClassMethodFunc){thisWired=argTypes[1].toWireType(destructors,this);" +
      "call.push(thisWired)}for(var i=0;i<expected;++i){" +
      "wired[i]=argTypes[i+2].toWireType(destructors,arguments[i]);call.push(wired[i])}" +
      "var rv=cppInvokerFunc.apply(null,call);if(needsDestructorStack){" +
      "runDestructors(destructors)}else{for(var i=isClassMethodFunc?1:2;i<argTypes.length;++i){" +
      "var param=i===1?thisWired:wired[i-2];if(argTypes[i].destructorFunction!==null){" +
      "argTypes[i].destructorFunction(param)}}}" +
      "if(returns){return argTypes[0].fromWireType(rv)}}}",
  },
  {
    name: "__emval_get_method_caller",
    start: "function __emval_get_method_caller(argCount,argTypes){",
    end: "return __emval_addMethodCaller(invokerFunction)}",
    code: "function __emval_get_method_caller(argCount,argTypes){" +
      "var types=__emval_lookupTypes(argCount,argTypes);var retType=types[0];" +
      "var invokerFunction=function(handle,name,destructors,args){var offset=0;" +
      "var a=new Array(argCount-1);for(var i=0;i<argCount-1;++i){" +
      "a[i]=types[i+1].readValueFromPointer(args+offset);offset+=types[i+1][\"argPackAdvance\"]}" +
      "var rv=handle[name].apply(handle,a);for(var i=0;i<argCount-1;++i){" +
      "if(types[i+1][\"deleteObject\"]){types[i+1].deleteObject(a[i])}}" +
      "if(!retType.isVoid){return retType.toWireType(destructors,rv)}};" +
      "return __emval_addMethodCaller(invokerFunction)}",
  },
  {
    // the wasm is inlined as a data: URI; fetching that is a connection the CSP refuses
    // (connect-src 'self'), so read it directly, as later Emscripten versions do
    name: "getBinaryPromise",
    start: "function getBinaryPromise(){if(!wasmBinary&&(ENVIRONMENT_IS_WEB||ENVIRONMENT_IS_WORKER)&&typeof fetch===\"function\")",
    end: "typeof fetch===\"function\")",
    code: "function getBinaryPromise(){if(!wasmBinary&&(ENVIRONMENT_IS_WEB||ENVIRONMENT_IS_WORKER)&&typeof fetch===\"function\"&&!isDataURI(wasmBinaryFile))",
  },
];

function fail(message) {
  console.error(`patch-opencv: ${message}`);
  process.exit(1);
}

const [input, output, wasmOut] = process.argv.slice(2);
if (!input || !output || !wasmOut) fail("usage: node web/patch-opencv.mjs IN.js OUT.js OUT.wasm");
let text = readFileSync(input, "utf8");

// The WebAssembly (8 MB) is inlined as one base64 string: Chromium spends minutes on a
// script like that here. It becomes its own file, which the page fetches and hands over as
// globalThis.OPENCV_WASM_BINARY before loading opencv.js (static/analysis.js).
const inline = 'var wasmBinaryFile="data:application/octet-stream;base64,';
const at = text.indexOf(inline);
if (at < 0 || text.indexOf(inline, at + 1) >= 0) fail(`${input}: the inlined wasm is not there once`);
const stop = text.indexOf('"', at + inline.length);
writeFileSync(wasmOut, Buffer.from(text.slice(at + inline.length, stop), "base64"));
text = text.slice(0, at) + 'var wasmBinaryFile="opencv.wasm"' + text.slice(stop + 1);
const binary = 'var wasmBinary;if(Module["wasmBinary"])wasmBinary=Module["wasmBinary"];';
if (text.split(binary).length !== 2) fail(`${input}: the wasmBinary setting is not there once`);
text = text.replace(binary, 'var wasmBinary=globalThis.OPENCV_WASM_BINARY;' +
                    'if(Module["wasmBinary"])wasmBinary=Module["wasmBinary"];');
for (const r of REPLACEMENTS) {
  const at = text.indexOf(r.start);
  if (at < 0 || text.indexOf(r.start, at + 1) >= 0) {
    fail(`${input}: ${r.name} is not there exactly once; is this the pinned opencv.js?`);
  }
  const end = text.indexOf(r.end, at);
  if (end < 0) fail(`${input}: the end of ${r.name} was not found`);
  text = text.slice(0, at) + r.code + text.slice(end + r.end.length);
}
for (const banned of ["new Function", "new_(Function", "eval("]) {
  if (text.includes(banned)) fail(`${input}: "${banned}" is still there after patching`);
}
writeFileSync(output, text);
